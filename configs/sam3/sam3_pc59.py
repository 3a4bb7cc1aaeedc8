# SAM 3 + SegEarth-OV3's fusion rule on pc59 (settings: configs/sam3/README.md).
_base_ = ['../_base_/models/sam3.py', '../_base_/datasets/pc59.py', '../_base_/default_runtime.py']
# confidence_threshold (and the background threshold) of the public SegEarth-OV3 transformers port
# (Bili-Sakura/SegEarth-OV-3 configs/cfg_*.py); see configs/sam3/README.md.
model = dict(vocabulary='pc59', confidence_threshold=0.3)
# The original image, no Resize: SAM 3's processor resizes it to 1008 x 1008 and the scores are
# upsampled back to it (as SegEarth-OV3 feeds the image file to SAM 3).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
