# MAFT+ ConvNeXt-L panoptic model (maftp_l_pano.pth, trained on COCO panoptic) zero-shot on ADE20K-150
# panoptic val: PQ and semantic mIoU, as the released MAFT-Plus configs/panoptic/eval.yaml. Short side 800,
# long <= 1333. Data: docs/datasets.md#ade-150-panoptic.
_base_ = [
    '../_base_/models/maftplus_convnext-l.py', '../_base_/datasets/ade150_panoptic.py',
    '../_base_/default_runtime.py'
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadAnnotations'),
    dict(type='LoadPanopticSegIds'),
    dict(type='PackPanopticInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = [dict(type='OVIoUMetric', convention='detectron2'), dict(type='OVPanopticMetric')]
val_evaluator = test_evaluator
# ADE20K-150 panoptic thing classes (ids into ade150; the others are stuff), as configs/fcclip_ade.py.
ade150_things = [
    7, 8, 10, 12, 14, 15, 18, 19, 20, 22, 23, 24, 27, 30, 31, 32, 33, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45,
    47, 49, 50, 53, 55, 56, 57, 58, 62, 64, 65, 66, 67, 69, 70, 71, 72, 73, 74, 75, 76, 78, 80, 81, 82, 83,
    85, 86, 87, 88, 89, 90, 92, 93, 95, 97, 98, 102, 103, 104, 107, 108, 110, 111, 112, 115, 116, 118, 119,
    120, 121, 123, 124, 125, 126, 127, 129, 130, 132, 133, 134, 135, 136, 137, 138, 139, 142, 143, 144,
    146, 147, 148, 149,
]
# the panoptic model (maftp_l_pano.pth, configs/panoptic/eval.yaml): COCO panoptic training vocabulary,
# CDT residual t + LayerNorm(MLP(attn)), panoptic + semantic inference (instance off), thresholds 0.2 / 0.7
model = dict(
    cdt=dict(residual='panoptic'), train_vocabulary='coco_panoptic133', vocabulary='fcclip/ade150',
    thing_classes=ade150_things, test_cfg=dict(panoptic_on=True, instance_on=False))
