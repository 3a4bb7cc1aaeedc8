# MAFT+ ConvNeXt-L (MAFTP-Large, trained on COCO-Stuff 171) zero-shot on ADE20K-847, semantic only, as the
# released MAFT-Plus configs/semantic/eval.yaml. Short side 800, long <= 1333; detectron2's mIoU convention.
# Data: docs/datasets.md#ade-847 (16-bit labels, ignore 65535).
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
        type='ADE20K847Dataset',
        data_root='data/ADE20K_2021_17_01',
        data_prefix=dict(img_path='images_detectron2/validation',
                         seg_map_path='annotations_detectron2/validation'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(type='OVIoUMetric', convention='detectron2', ignore_index=65535)
val_evaluator = test_evaluator
model = dict(vocabulary='fcclip/ade847', test_cfg=dict(panoptic_on=False, instance_on=False))
