# FC-CLIP ConvNeXt-L trained on COCO panoptic, evaluated zero-shot on ADE20K-150 (semantic mIoU, panoptic PQ,
# instance mask AP in one pass) with FC-CLIP's protocol: its ADE-150 class list, short side 800 / long side at
# most 1333 (PIL bilinear, as detectron2), mask AP against ade20k_instance_val.json.
#   python tools/test.py configs/fcclip_ade.py fcclip_cocopan_ovseg.pth
# (convert the released checkpoint first: tools/model_converters/fcclip_to_ovseg.py; data layout:
# docs/datasets.md#ade-150-panoptic)
_base_ = [
    '_base_/models/fcclip_convnext-l.py', '_base_/datasets/fcclip/ade150_panoptic.py',
    '_base_/default_runtime.py'
]
model = dict(vocabulary=_base_.vocabulary, thing_classes=_base_.thing_classes, test_cfg=_base_.outputs)
