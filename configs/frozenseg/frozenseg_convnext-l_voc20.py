# FrozenSeg ConvNeXt-L + SAM ViT-B (trained on COCO panoptic) zero-shot on PASCAL VOC 20 (background
# ignored), semantic only, as the released FrozenSeg configs/coco/frozenseg/convnext_large_eval_pas21.yaml
# with the PAS-20 dataset (no released PAS-20 file) (panoptic and instance inference off). Short side 800,
# long <= 1333; detectron2's mIoU convention.
_base_ = [
    '../_base_/models/frozenseg_convnext-l.py', '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py'
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(_delete_=True, type='OVIoUMetric', convention='detectron2')
val_evaluator = test_evaluator
model = dict(vocabulary='fcclip/voc20', test_cfg=dict(panoptic_on=False, instance_on=False))
