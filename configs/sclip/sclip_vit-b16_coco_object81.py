# SCLIP ViT-B/16 (OpenAI CLIP), training-free, on COCO-Object 81: short side 336, slide 224 / 112.
# Protocol of wangf3014/SCLIP@57fa9aa configs/cfg_coco_object.py.
_base_ = [
    '../_base_/models/sclip_vit-b16.py', '../_base_/datasets/coco_object81.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_coco_object81', logit_scale=50.0, prob_thd=0.1)
# The original's test pipeline: short side 336 (long side at most 2048); labels at full size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
