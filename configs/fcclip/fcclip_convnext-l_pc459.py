# FC-CLIP ConvNeXt-L (trained on COCO panoptic) zero-shot on PASCAL Context 459 with FC-CLIP's protocol
# (semantic only, as the released fcclip_convnext_large_eval_pc459.yaml; FC-CLIP's 459-class list).
# Data: docs/datasets.md#pascal-context-459.
_base_ = [
    '../_base_/models/fcclip_convnext-l.py', '../_base_/datasets/fcclip/pc459.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, test_cfg=_base_.outputs)
