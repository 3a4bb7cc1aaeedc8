# FrozenSeg ConvNeXt-L + SAM ViT-B (trained on COCO panoptic) zero-shot on ADE20K-150: semantic mIoU,
# panoptic PQ and instance mask AP in one pass, as the released FrozenSeg
# configs/coco/frozenseg/convnext_large_eval_ade20k.yaml. Short side 800, long <= 1333 (PIL bilinear).
#   python tools/model_converters/frozenseg_to_ovseg.py frozenseg_convnext_large.pth frozenseg_ovseg.pth
#   python tools/test.py configs/frozenseg/frozenseg_convnext-l_ade150.py frozenseg_ovseg.pth
# Data: docs/datasets.md#ade-150-panoptic.
_base_ = [
    '../_base_/models/frozenseg_convnext-l.py', '../_base_/datasets/fcclip/ade150_panoptic.py',
    '../_base_/default_runtime.py'
]
# FC-CLIP's ADE-150 protocol (FrozenSeg keeps FC-CLIP's dataset registration): its class list, thing classes,
# outputs and mask AP against ade20k_instance_val.json.
model = dict(vocabulary=_base_.vocabulary, thing_classes=_base_.thing_classes, test_cfg=_base_.outputs)
