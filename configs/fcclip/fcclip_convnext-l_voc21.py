# FC-CLIP ConvNeXt-L (trained on COCO panoptic) zero-shot on PASCAL VOC 21 (background is a class, scored with
# FC-CLIP's 74 background names) with FC-CLIP's protocol (semantic only,
# fcclip_convnext_large_eval_pas21.yaml).
_base_ = [
    '../_base_/models/fcclip_convnext-l.py', '../_base_/datasets/fcclip/voc21.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, test_cfg=_base_.outputs)
