# COCO-Object val2017, 81 classes (background + the 80 COCO thing classes): 5,000 images.
# Labels are *_instanceTrainIds.png maps written by tools/dataset_converters/coco_object.py from the
# COCO-Stuff stuffthingmaps (0 = background: every stuff class and the unlabeled pixels; 1..80 = things
# in COCO category order), as GroupViT's convert_coco_object.py does. COCOObjectDataset reads them
# ('.jpg' images, '_instanceTrainIds.png' labels) with the class names of ovseg's 'coco_object81'.
# Test protocol of ClearCLIP / CLIP-DINOiser: short side resized to 448 (long side at most 2048).
dataset_type = 'COCOObjectDataset'
data_root = 'data/coco_stuff164k'
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
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
# OVIoUMetric = mmseg's IoUMetric (convention='mmseg') plus the per-class JSON in the log folder.
test_evaluator = dict(type='OVIoUMetric', iou_metrics=['mIoU'])
val_evaluator = test_evaluator
data_source = dict(
    resize='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 '
           'segmentation/configs/_base_/datasets/coco.py '
           "(mmseg 0.x Resize img_scale (2048, 448), keep_ratio, cv2 bilinear)",
    dataset='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 '
            'segmentation/configs/_base_/datasets/coco.py: '
            "COCOObjectDataset (*_instanceTrainIds.png, GroupViT conversion)",
    metric='mmseg 0.x CustomDataset.evaluate mIoU: a class predicted but absent from the ground truth '
           'counts as IoU 0')
