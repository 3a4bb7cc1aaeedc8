# NACLIP ViT-B/16 (OpenAI CLIP), training-free, on PASCAL Context 59: short side 336, slide 224 / 112.
# Protocol of sinahmr/NACLIP@0cac3a6 (configs at cbb720d) configs/cfg_context59.py.
_base_ = [
    '../_base_/models/naclip_vit-b16.py', '../_base_/datasets/pc59.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_pc59')
# The original's test pipeline: short side 336 (long side at most 2048); labels at full size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
