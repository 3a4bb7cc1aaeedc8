# ADE20K-150 val with panoptic ground truth (Mask2Former's ade20k_panoptic_val, 2,000 images): semantic
# (mIoU on the ADE label maps, detectron2 convention), panoptic (PQ) and instance (mask AP) metrics in one
# pass. Test size of the Mask2Former family: short side 800, long side at most 1333.
# Layout and preparation: docs/datasets.md#ade-150-panoptic.
dataset_type = 'ADE20KPanopticDataset'
data_root = 'data/ade/ADEChallengeData2016'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    # Annotations are loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadAnnotations'),  # ADE semantic PNG; reduce_zero_label comes from the dataset (True)
    dict(type='LoadPanopticSegIds'),  # the panoptic PNG (pan_map_path)
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
        ann_file='ade20k_panoptic_val.json',
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation',
                         pan_map_path='ade20k_panoptic_val'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = [
    dict(type='OVIoUMetric', convention='detectron2'),
    dict(type='OVPanopticMetric'),
    dict(type='OVInstanceAPMetric'),
]
val_evaluator = test_evaluator
