# MAFT+ ConvNeXt-L panoptic model (maftp_l_pano.pth) on COCO panoptic val2017, its training data: a
# closed-vocabulary check (MAFT+ publishes no COCO number). PQ and semantic mIoU; short side 800,
# long <= 1333. Data: docs/datasets.md#coco-panoptic.
_base_ = [
    '../_base_/models/maftplus_convnext-l.py', '../_base_/datasets/coco_panoptic.py',
    '../_base_/default_runtime.py'
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackPanopticInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = [dict(type='OVIoUMetric', convention='detectron2'), dict(type='OVPanopticMetric')]
val_evaluator = test_evaluator
# the panoptic model (maftp_l_pano.pth, configs/panoptic/eval.yaml): COCO panoptic training vocabulary,
# CDT residual t + LayerNorm(MLP(attn)), panoptic + semantic inference (instance off), thresholds 0.2 / 0.7
model = dict(
    cdt=dict(residual='panoptic'), train_vocabulary='coco_panoptic133', vocabulary='coco_panoptic133',
    thing_classes=list(range(80)), test_cfg=dict(panoptic_on=True, instance_on=False))
