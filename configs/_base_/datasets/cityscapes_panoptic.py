# Cityscapes val (500 images, 19 classes, 8 things) with panoptic ground truth from cityscapesScripts'
# createPanopticImgs: semantic (mIoU on the labelTrainIds maps), panoptic (PQ) and instance (COCO-style
# mask AP; the Cityscapes benchmark's own instance AP is computed differently) metrics.
# Test size of the Mask2Former family on Cityscapes: short side 1024, long side at most 2560.
# Layout and preparation: docs/datasets.md#cityscapes-panoptic.
dataset_type = 'CityscapesPanopticDataset'
data_root = 'data/cityscapes'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 1024), keep_ratio=True),
    # Annotations are loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadAnnotations'),
    dict(type='LoadPanopticSegIds'),
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
        ann_file='gtFine/cityscapes_panoptic_val.json',
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val',
                         pan_map_path='gtFine/cityscapes_panoptic_val'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = [
    dict(type='OVIoUMetric', convention='detectron2'),
    dict(type='OVPanopticMetric'),
    dict(type='OVInstanceAPMetric'),
]
val_evaluator = test_evaluator
