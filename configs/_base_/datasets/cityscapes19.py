# Cityscapes val, 19 classes: 500 images; labels converted with mmseg's
# tools/dataset_converters/cityscapes.py (*_gtFine_labelTrainIds.png).
# Test protocol of ClearCLIP / CLIP-DINOiser: short side resized to 448 (long side at most 2048).
# mmseg's CityscapesDataset with checks that name a missing folder and its converter (checked_mmseg.py).
dataset_type = 'CheckedCityscapesDataset'
data_root = 'data/cityscapes'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 448), keep_ratio=True),
    # Annotations are loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
# OVIoUMetric = mmseg's IoUMetric (convention='mmseg') plus the per-class JSON in the log folder.
test_evaluator = dict(type='OVIoUMetric', iou_metrics=['mIoU'])
val_evaluator = test_evaluator
data_source = dict(
    resize='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 '
           'segmentation/configs/_base_/datasets/cityscapes.py '
           "(mmseg 0.x Resize img_scale (2048, 448), keep_ratio, cv2 bilinear)",
    dataset='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 '
            'segmentation/configs/_base_/datasets/cityscapes.py: '
            "mmseg's CityscapesDataset (*_labelTrainIds.png), ignore 255",
    metric='mmseg 0.x CustomDataset.evaluate mIoU: a class predicted but absent from the ground truth '
           'counts as IoU 0')
