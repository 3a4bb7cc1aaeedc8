# MAFT+ ConvNeXt-L (MAFTP-Large, trained on COCO-Stuff 171) zero-shot on PASCAL Context 459, semantic only,
# as the released MAFT-Plus configs/semantic/eval.yaml. Short side 800, long <= 1333; detectron2's mIoU
# convention. Data: docs/datasets.md#pascal-context-459 (16-bit labels, ignore 65535).
_base_ = ['../_base_/models/maftplus_convnext-l.py', '../_base_/default_runtime.py']
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadUint16Annotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PascalContext459Dataset',
        data_root='data/VOCdevkit/VOC2010',
        ann_file='ImageSets/Main/val.txt',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext459'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(type='OVIoUMetric', convention='detectron2', ignore_index=65535)
val_evaluator = test_evaluator
model = dict(vocabulary='fcclip/pc459', test_cfg=dict(panoptic_on=False, instance_on=False))
