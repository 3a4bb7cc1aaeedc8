# Trident, CLIP ViT-H/14 (LAION-2B) + DINO ViT-B/16 + SAM ViT-B, training-free, on PASCAL VOC 21: short
# side 672, splice windows 336 / 224. Every setting with its source: configs/trident/README.md.
# Model settings: Trident configs/cfg_voc21.py as recorded by ../shared/parity/trident/manifest.json.
# prob_thd 0.2: ProxyCLIP's value for this dataset (Trident's code base; Trident's own for VOC-21).
# ViT-H/14: ('laion2b_s32b_b79k', 'ViT-H-14') as listed in Trident's configs/base_config.py; patch 14,
# so the CLIP input and SAM's image are rounded to multiples of 14 (trident.py uses the CLIP stride for
# both); SAM stays ViT-B (base_config.py's sam_model_type; trident.py builds no SAM for 'vit_h').
_base_ = [
    '../_base_/models/trident_vit-b16.py', '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py'
]
model = dict(
    vocabulary='proxyclip_voc21', prob_thd=0.2,
    backbone=dict(model_name='ViT-H-14', pretrained='laion2b_s32b_b79k'),
    sam_refiner=dict(image_multiple=14))
# Test pipeline: short side 672 (long side at most 2048); labels at full size. Trident's cfg_*.py test
# scales are in no stored copy: VOC 672 and Cityscapes 688 as ovseg's configs/sam_clip/README.md records
# Trident's scales, 672 elsewhere [unverified].
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 672), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
data_source = dict(
    resize='short side 672, mmseg Resize keep_ratio (cv2 bilinear); Trident\'s cfg test scale, '
           'unverified: see configs/trident/README.md')
