# PASCAL VOC 2012 val, 20 classes (no background): the VOC21 images; background pixels are not evaluated.
# Test protocol of ClearCLIP / CLIP-DINOiser: short side resized to 448 (long side at most 2048).
# PascalVOC20Dataset sets reduce_zero_label=True itself (background 0 -> ignore 255, objects 1..20 ->
# 0..19) and takes its class names from ovseg's 'voc20' vocabulary; do not add a label_map on top.
dataset_type = 'PascalVOC20Dataset'
data_root = 'data/VOCdevkit/VOC2012'
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
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
val_dataloader = test_dataloader
# OVIoUMetric = mmseg's IoUMetric (convention='mmseg') plus the per-class JSON in the log folder.
test_evaluator = dict(type='OVIoUMetric', iou_metrics=['mIoU'])
val_evaluator = test_evaluator
data_source = dict(
    resize='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 '
           'segmentation/configs/_base_/datasets/pascal_voc12_20.py '
           "(mmseg 0.x Resize img_scale (2048, 448), keep_ratio, cv2 bilinear)",
    dataset='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 '
            'segmentation/configs/_base_/datasets/pascal_voc12_20.py: '
            "PascalVOCDataset20 (background 0 -> ignore, reduce_zero_label)",
    metric='mmseg 0.x CustomDataset.evaluate mIoU: a class predicted but absent from the ground truth '
           'counts as IoU 0')
