# PASCAL Context val, all 459 classes (PC-459): 5,105 images, 16-bit TIFF labels (label id - 1, ignore
# 65535) written by tools/dataset_converters/pascal_context_459.py (docs/datasets.md#pascal-context-459).
# Test protocol of ClearCLIP / CLIP-DINOiser: short side resized to 448 (long side at most 2048).
dataset_type = 'PascalContext459Dataset'
data_root = 'data/VOCdevkit/VOC2010'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 448), keep_ratio=True),
    # mmseg's LoadAnnotations casts to uint8 (label 400 -> 144, 65535 -> 255): keep 16 bits.
    # Loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadUint16Annotations'),
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
        ann_file='ImageSets/Main/val.txt',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext459'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(type='OVIoUMetric', iou_metrics=['mIoU'], ignore_index=65535)
val_evaluator = test_evaluator
data_source = dict(
    resize="ovseg's choice: the short-side-448 protocol of the other training-free benchmarks "
           '(CLIP-DINOiser segmentation/configs/_base_/datasets/*.py); the training-free originals did not '
           'evaluate this dataset',
    metric='mmseg IoUMetric mIoU (a class predicted but absent from the ground truth counts as IoU 0)')
# Large vocabulary: OVSegmentor configs take this test_cfg (model.test_cfg=_base_.large_vocabulary_test_cfg):
# the scores reach full resolution 64 classes at a time, with the same result, and only pred_sem_seg (what
# the metric reads) is kept: the float32 scores of every class would hold ~0.5-0.9 GB per image.
large_vocabulary_test_cfg = dict(class_chunk=64, keep_seg_logits=False)
