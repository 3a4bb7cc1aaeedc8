# Trident, CLIP ViT-B/16 (OpenAI) + DINO ViT-B/16 + SAM ViT-B, training-free, on Cityscapes 19: short
# side 688, splice windows 336 / 224. Every setting with its source: configs/trident/README.md.
# Model settings: cos_fac 3.0, refine_neg_cos False, coarse_thresh 0.1: Trident cfg_city_scapes.py as
# copied into RADSeg-OVSS/RADSeg configs_mmseg/datasets/cityscapes.py (a derivative that copies
# Trident's cfg files) and quoted alike by a third-party report.
# prob_thd 0.0: ProxyCLIP's value for this dataset (Trident's code base; Trident's own for VOC-21).
# sam_splits=2: trident.py encodes the left and right halves with SAM for the aggregation on Cityscapes
# (its CityscapesDataset branch) and the whole image for the refinement.
_base_ = [
    '../_base_/models/trident_vit-b16.py', '../_base_/datasets/cityscapes19.py',
    '../_base_/default_runtime.py'
]
model = dict(
    vocabulary='sclip_cityscapes19', prob_thd=0.0, sam_refiner=dict(coarse_thresh=0.1),
    aggregator=dict(cos_fac=3.0, keep_negative=False), sam_splits=2)
# Test pipeline: short side 688 (long side at most 2048); labels at full size. Trident's cfg_*.py test
# scales are in no stored copy: VOC 672 and Cityscapes 688 as ovseg's configs/sam_clip/README.md records
# Trident's scales, 672 elsewhere [unverified].
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 688), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
data_source = dict(
    resize='short side 688, mmseg Resize keep_ratio (cv2 bilinear); Trident\'s cfg test scale, '
           'unverified: see configs/trident/README.md')
