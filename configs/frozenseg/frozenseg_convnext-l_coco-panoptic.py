# FrozenSeg ConvNeXt-L + SAM ViT-B on COCO panoptic val2017 (its training data), semantic mIoU, panoptic PQ
# and mask AP, as the released configs/coco/frozenseg/convnext_large_eval_coco.yaml. Short side 800,
# long <= 1333. Data: docs/datasets.md#coco-panoptic.
_base_ = [
    '../_base_/models/frozenseg_convnext-l.py', '../_base_/datasets/coco_panoptic.py',
    '../_base_/default_runtime.py'
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackPanopticInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
model = dict(vocabulary='coco_panoptic133', thing_classes=list(range(80)))  # the 80 things come first
