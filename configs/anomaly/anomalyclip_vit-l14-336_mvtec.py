# AnomalyCLIP zero-shot on the MVTec AD test split at 518 px, with prompts learned on the other dataset:
#   python tools/train.py configs/anomaly/anomalyclip_vit-l14-336_train-visa.py --work-dir work_dirs/ac_visa
#   python tools/test.py configs/anomaly/anomalyclip_vit-l14-336_mvtec.py work_dirs/ac_visa/epoch_15.pth
# (or a converted official checkpoint: tools/model_converters/anomalyclip_to_ovseg.py).
_base_ = [
    '../_base_/models/anomalyclip_vit-l14-336.py', '../_base_/datasets/mvtec_ad.py',
    '../_base_/default_runtime.py'
]
# ovseg's anomaly modules register on import (AnomalyCLIP lives in its own package).
custom_imports = dict(
    imports=['ovseg', 'ovseg.models.anomaly', 'ovseg.models.anomaly.anomalyclip', 'ovseg.datasets.anomaly',
             'ovseg.evaluation.anomaly'],
    allow_failed_imports=False)
# Heat-map overlays (image + ground-truth outline | anomaly map) for tools/test.py --show-dir.
visualizer = dict(type='AnomalyLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
# The reference's own resize (test_resize of the model base), PIL decoding as the reference reads images.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    _base_.test_resize,
    dict(type='LoadAnomalyMask'),
    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}}),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
# Metrics at the model's input resolution, as the reference evaluation resizes the masks.
test_evaluator = dict(eval_size=(518, 518))
val_evaluator = test_evaluator
