# FC-CLIP ConvNeXt-L on COCO panoptic val2017 (its training data: closed-vocabulary check), semantic mIoU,
# panoptic PQ and mask AP, as the released fcclip_convnext_large_eval_coco.yaml. Short side 800, long <= 1333.
# Data: docs/datasets.md#coco-panoptic.
_base_ = [
    '../_base_/models/fcclip_convnext-l.py', '../_base_/datasets/fcclip/coco_panoptic.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, thing_classes=_base_.thing_classes, test_cfg=_base_.outputs)
