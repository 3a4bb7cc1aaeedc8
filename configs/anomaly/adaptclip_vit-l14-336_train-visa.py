# Train AdaptCLIP's adapters on the VisA test split (images with masks) for use on MVTec AD, with the original
# recipe (train.py defaults): 518 px, batch 8, 15 epochs, Adam lr 1e-3, betas (0.5, 0.999), constant lr, seed 10;
# every query is paired with one normal training image of its category drawn at random (the prompt-query
# adapter's reference). Losses per adapter: cross-entropy + focal + dice + dice, summed. CLIP stays frozen.
# Evaluate: tools/test.py configs/anomaly/adaptclip_vit-l14-336_mvtec.py (zero-shot) or
# adaptclip_vit-l14-336_1shot_mvtec.py (1-shot) with WORK_DIR/epoch_15.pth.
_base_ = [
    '../_base_/models/adaptclip_vit-l14-336.py', '../_base_/datasets/visa.py',
    '../_base_/default_runtime.py'
]
custom_imports = dict(
    imports=['ovseg', 'ovseg.models.anomaly', 'ovseg.models.anomaly.adaptclip', 'ovseg.datasets.anomaly',
             'ovseg.evaluation.anomaly'],
    allow_failed_imports=False)
# Masks are loaded before the resize so that they follow the image (nearest); PIL bicubic for the image.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnomalyMask'),
    dict(type='Resize', scale=(518, 518), keep_ratio=False, interpolation='bicubic', backend='pillow'),
    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}}),
]
# The references are loaded as the original's transform does (PIL decoding, test_resize of the model base).
reference_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    _base_.test_resize,
    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}}),
]
# Training batches are stacked, so the preprocessor pads them to one size (every image is resized to it).
model = dict(data_preprocessor=dict(size=(518, 518)), reference_pipeline=reference_pipeline)
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type={{_base_.dataset_type}}, data_root={{_base_.data_root}}, pipeline=train_pipeline,
                 references=dict(k_shot=None)))  # the pool of normal training images of each category
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3, betas=(0.5, 0.999)))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=15, val_interval=100)
log_processor = dict(by_epoch=True)
# A checkpoint holds the frozen ViT-L/14 too (~1.7 GB): keep the last one only.
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=5, max_keep_ckpts=1))
randomness = dict(seed=10)
# Training only: the evaluation uses the other dataset's configs.
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
