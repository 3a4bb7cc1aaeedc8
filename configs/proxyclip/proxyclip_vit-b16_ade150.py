# ProxyCLIP ViT-B/16 (OpenAI CLIP) + DINO ViT-B/8, training-free, on ADE20K 150: short side 448, slide 336 / 112.
# Protocol of mc-lan/ProxyCLIP@05c3c18 configs/cfg_ade20k.py.
# cls_ade20k.txt is not in the stored copy; SCLIP's class file.
_base_ = [
    '../_base_/models/proxyclip_vit-b16.py', '../_base_/datasets/ade150.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_ade150', prob_thd=0.0)
# The original's test pipeline: short side 448 (long side at most 2048); labels at full size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 448), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
