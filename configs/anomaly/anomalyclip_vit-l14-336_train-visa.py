# Learn AnomalyCLIP's prompts on the VisA test split (images with masks) for zero-shot use on MVTec AD, with
# the published recipe (reference train.py / train.sh): 518 px, batch 8, 15 epochs, Adam lr 1e-3,
# betas (0.5, 0.999), constant lr, seed 111. Only the prompt learner trains; CLIP stays frozen.
# Evaluate with configs/anomaly/anomalyclip_vit-l14-336_mvtec.py WORK_DIR/epoch_15.pth.
_base_ = [
    '../_base_/models/anomalyclip_vit-l14-336.py', '../_base_/datasets/visa.py',
    '../_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['ovseg', 'ovseg.models.anomaly', 'ovseg.models.anomaly.anomalyclip', 'ovseg.datasets.anomaly',
             'ovseg.evaluation.anomaly'],
    allow_failed_imports=False)
# Training batches are stacked, so the preprocessor pads them to one size (every image is resized to it).
model = dict(data_preprocessor=dict(size=(518, 518)))
# Masks are loaded before the resize so that they follow the image (nearest); PIL bicubic for the image.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnomalyMask'),
    dict(type='Resize', scale=(518, 518), keep_ratio=False, interpolation='bicubic', backend='pillow'),
    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}}),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type={{_base_.dataset_type}}, data_root={{_base_.data_root}}, pipeline=train_pipeline))
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, betas=(0.5, 0.999)))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=15, val_interval=100)
log_processor = dict(by_epoch=True)
# One ViT-L/14 checkpoint holds the frozen CLIP too (~1.7 GB): keep the last one only.
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=5, max_keep_ckpts=1))
randomness = dict(seed=111)
# Training only: the zero-shot evaluation uses the other dataset's config.
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
