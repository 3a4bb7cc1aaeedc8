# WinCLIP+ 4-shot: WinCLIP zero-shot combined with the association to 4 normal reference image(s) per
# category, drawn from the CSV's normal train rows with seed 0 (anomalib's rule: first k of a seeded shuffle;
# other draws: --cfg-options test_dataloader.dataset.references.seed=N).
# ViT-B-16-plus-240 (LAION-400M), VisA test split (1cls.csv) at 240 px.
_base_ = [
    '../_base_/models/winclip_vit-b16-plus-240.py', '../_base_/datasets/visa.py',
    '../_base_/default_runtime.py'
]
# ovseg's anomaly modules register on import.
custom_imports = dict(
    imports=['ovseg', 'ovseg.models.anomaly', 'ovseg.datasets.anomaly', 'ovseg.evaluation.anomaly'],
    allow_failed_imports=False)
# Heat-map overlays (image + ground-truth outline | anomaly map) for tools/test.py --show-dir.
visualizer = dict(type='AnomalyLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# The reference's own resize (test_resize of the model base), PIL decoding as the reference reads images;
# the normal references are loaded and resized by the same pipeline as the queries.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    _base_.test_resize,
    dict(type='LoadAnomalyMask'),
    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}}),
]
model = dict(
    type='FewShotAnomalySegmentor', head=dict(type='WinCLIPFewShotHead'), reference_pipeline=test_pipeline)
test_dataloader = dict(dataset=dict(pipeline=test_pipeline, references=dict(k_shot=4, seed=0, draw='shuffle')))
val_dataloader = test_dataloader
# Metrics at the model's input resolution, as the reference evaluations resize the masks.
test_evaluator = dict(eval_size=(240, 240))
val_evaluator = test_evaluator
