# Trident, CLIP ViT-B/16 (OpenAI) + DINO ViT-B/16 + SAM ViT-B, training-free, on ADE20K 150: short side
# 672, splice windows 336 / 224. Every setting with its source: configs/trident/README.md.
# Model settings: refine_neg_cos False, coarse_thresh 0.05: Trident cfg_ade20k.py as copied into RADSeg-
# OVSS/RADSeg configs_mmseg/datasets/ade20k.py (a derivative that copies Trident's cfg files)
# [unverified].
# prob_thd 0.0: ProxyCLIP's value for this dataset (Trident's code base; Trident's own for VOC-21).
_base_ = [
    '../_base_/models/trident_vit-b16.py', '../_base_/datasets/ade150.py',
    '../_base_/default_runtime.py'
]
model = dict(
    vocabulary='sclip_ade150', prob_thd=0.0, sam_refiner=dict(coarse_thresh=0.05),
    aggregator=dict(keep_negative=False))
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
