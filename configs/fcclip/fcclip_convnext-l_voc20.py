# FC-CLIP ConvNeXt-L (trained on COCO panoptic) zero-shot on PASCAL VOC 20 (background ignored) with FC-CLIP's
# protocol (semantic only, as the released fcclip_convnext_large_eval_pas20.yaml; detectron2 mIoU).
_base_ = [
    '../_base_/models/fcclip_convnext-l.py', '../_base_/datasets/fcclip/voc20.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, test_cfg=_base_.outputs)
