# AdaptCLIP 1-shot (all three adapters, 1 normal reference per category) on the VisA test split at 518 px,
# with the adapters trained on MVTec AD (the paper's cross-dataset protocol):
#   python tools/train.py configs/anomaly/adaptclip_vit-l14-336_train-mvtec.py --work-dir work_dirs/adaptclip_mvtec
#   python tools/test.py configs/anomaly/adaptclip_vit-l14-336_1shot_visa.py work_dirs/adaptclip_mvtec/epoch_15.pth
# (or the released adapters trained on MVTec AD, converted by tools/model_converters/adaptclip_to_ovseg.py).
_base_ = [
    '../_base_/models/adaptclip_vit-l14-336.py', '../_base_/datasets/visa.py',
    '../_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['ovseg', 'ovseg.models.anomaly', 'ovseg.models.anomaly.adaptclip', 'ovseg.datasets.anomaly',
             'ovseg.evaluation.anomaly'],
    allow_failed_imports=False)
visualizer = dict(type='AnomalyLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# The reference's own resize (test_resize of the model base), PIL decoding as the reference reads images;
# the normal references are loaded and resized by the same pipeline as the queries.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    _base_.test_resize,
    dict(type='LoadAnomalyMask'),
    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}}),
]
model = dict(reference_pipeline=test_pipeline)
# The original's draw: per category torch.manual_seed(seed); torch.randint(0, n, (k,)) over the normal training
# images (with replacement); seed 10 is its test.py default (other draws: ...references.seed=N).
test_dataloader = dict(
    dataset=dict(pipeline=test_pipeline, references=dict(k_shot=1, seed=10, draw='randint')))
val_dataloader = test_dataloader
# Metrics at the model's input resolution, as the original evaluation resizes the masks.
test_evaluator = dict(eval_size=(518, 518))
val_evaluator = test_evaluator
