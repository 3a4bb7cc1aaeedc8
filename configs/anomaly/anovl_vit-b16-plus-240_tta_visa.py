# AnoVL with its per-image test-time adapter (5 AdamW steps: the reference's --adapter True --epoch 5),
# ViT-B-16-plus-240 (LAION-400M), VisA test split (1cls.csv) at 240 px.
_base_ = [
    '../_base_/models/anovl_vit-b16-plus-240.py', '../_base_/datasets/visa.py',
    '../_base_/default_runtime.py'
]
# ovseg's anomaly modules register on import (AnoVL lives in its own module).
custom_imports = dict(
    imports=['ovseg', 'ovseg.models.anomaly', 'ovseg.models.anomaly.anovl', 'ovseg.datasets.anomaly',
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
test_evaluator = dict(eval_size=(240, 240))
val_evaluator = test_evaluator
# Per image: a fresh, seeded adapter trained on its own pseudo-labels (ovseg/models/anomaly/anovl_adapter.py).
model = dict(head=dict(adapter=dict(type='AnoVLTestTimeAdapter', steps=5, lr=1e-3, weight_decay=0.01, seed=0)))
