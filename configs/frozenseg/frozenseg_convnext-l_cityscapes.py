# FrozenSeg ConvNeXt-L + SAM ViT-B (trained on COCO panoptic) zero-shot on Cityscapes val: semantic mIoU,
# panoptic PQ and COCO-style mask AP (the released log's AP is the Cityscapes instance protocol), as the
# released configs/coco/frozenseg/convnext_large_eval_cityscapes.yaml: short side 1024, long <= 2560.
# Data: docs/datasets.md#cityscapes-panoptic.
_base_ = [
    '../_base_/models/frozenseg_convnext-l.py', '../_base_/datasets/cityscapes_panoptic.py',
    '../_base_/default_runtime.py'
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 1024), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadAnnotations'),
    dict(type='LoadPanopticSegIds'),
    dict(type='PackPanopticInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
# person, rider, car, truck, bus, train, motorcycle, bicycle
model = dict(vocabulary='fcclip/cityscapes19', thing_classes=[11, 12, 13, 14, 15, 16, 17, 18])
