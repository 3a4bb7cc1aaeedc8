# COCO panoptic val2017 (5,000 images, 80 things + 53 stuff): semantic (mIoU of the 133 classes derived from
# the panoptic PNGs, detectron2 convention), panoptic (PQ) and instance (mask AP against the thing segments)
# metrics. Test size of the Mask2Former family: short side 800, long side at most 1333.
# Layout: docs/datasets.md#coco-panoptic.
dataset_type = 'COCOPanopticDataset'
data_root = 'data/coco'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    # Annotations are loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackPanopticInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img_path='val2017', seg_map_path='annotations/panoptic_val2017'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = [
    dict(type='OVIoUMetric', convention='detectron2'),
    dict(type='OVPanopticMetric'),
    dict(type='OVInstanceAPMetric'),
]
val_evaluator = test_evaluator
