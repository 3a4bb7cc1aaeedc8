# ADE20K-Full (ADE-847) val: 2,000 images, 847 classes (Mask2Former / FC-CLIP order), 16-bit TIFF labels
# with ignore 65535, written by tools/dataset_converters/ade20k_847.py (docs/datasets.md#ade-847).
# Test protocol of ClearCLIP / CLIP-DINOiser: short side resized to 448 (long side at most 2048).
dataset_type = 'ADE20K847Dataset'
data_root = 'data/ADE20K_2021_17_01'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 448), keep_ratio=True),
    # mmseg's LoadAnnotations casts to uint8 (label 300 -> 44, 65535 -> 255): keep 16 bits.
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
        data_prefix=dict(img_path='images_detectron2/validation',
                         seg_map_path='annotations_detectron2/validation'),
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
