# SAM 3 + SegEarth-OV3's fusion rule on ade847 (settings: configs/sam3/README.md).
_base_ = ['../_base_/models/sam3.py', '../_base_/datasets/ade847.py', '../_base_/default_runtime.py']
# ADE-847 has no published SegEarth-OV3 setting: SAM 3's default confidence threshold.
model = dict(vocabulary='ade847', confidence_threshold=0.5)
# The original image, no Resize: SAM 3's processor resizes it to 1008 x 1008 and the scores are
# upsampled back to it (as SegEarth-OV3 feeds the image file to SAM 3).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadUint16Annotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
