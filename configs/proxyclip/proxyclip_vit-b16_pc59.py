# ProxyCLIP ViT-B/16 (OpenAI CLIP) + DINO ViT-B/8, training-free, on PASCAL Context 59: short side 336, slide 336 / 112.
# Protocol of mc-lan/ProxyCLIP@05c3c18 configs/cfg_context59.py.
# cfg_context59.py and cls_context59.txt are not in the stored copy; short side 336 as its siblings, SCLIP's class file.
_base_ = [
    '../_base_/models/proxyclip_vit-b16.py', '../_base_/datasets/pc59.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_pc59', prob_thd=0.0)
# The original's test pipeline: short side 336 (long side at most 2048); labels at full size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
