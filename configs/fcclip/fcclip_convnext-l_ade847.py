# FC-CLIP ConvNeXt-L (trained on COCO panoptic) zero-shot on ADE20K-847 with FC-CLIP's protocol (semantic
# only,
# as the released fcclip_convnext_large_eval_a847.yaml; FC-CLIP's 847-class list). Data:
# docs/datasets.md#ade-847.
_base_ = [
    '../_base_/models/fcclip_convnext-l.py', '../_base_/datasets/fcclip/ade847.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, test_cfg=_base_.outputs)
