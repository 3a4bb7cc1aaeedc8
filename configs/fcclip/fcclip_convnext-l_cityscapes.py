# FC-CLIP ConvNeXt-L (trained on COCO panoptic) zero-shot on Cityscapes val with FC-CLIP's protocol:
# semantic mIoU,
# panoptic PQ and COCO-style mask AP (the published AP uses the Cityscapes instance protocol instead),
# short side
# 1024 / long side at most 2560, as the released fcclip_convnext_large_eval_cityscapes.yaml.
# Data: docs/datasets.md#cityscapes-panoptic.
_base_ = [
    '../_base_/models/fcclip_convnext-l.py', '../_base_/datasets/fcclip/cityscapes_panoptic.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, thing_classes=_base_.thing_classes, test_cfg=_base_.outputs)
