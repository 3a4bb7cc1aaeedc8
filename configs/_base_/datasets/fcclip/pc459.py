# FC-CLIP's PASCAL Context 459 protocol (fcclip_convnext_large_eval_pc459.yaml: semantic only), short side
# 800 / long side at most 1333 (PIL bilinear); 16-bit labels, ignore 65535
# (docs/datasets.md#pascal-context-459). Descendants of FC-CLIP reuse this file with their own model.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    # Annotations are loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadUint16Annotations'),  # 16 bits: mmseg's LoadAnnotations would cast to uint8
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
vocabulary = 'fcclip/pc459'
outputs = dict(semantic_on=True, panoptic_on=False, instance_on=False)
data_source = dict(
    resize='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 configs/coco/panoptic-segmentation/'
           'maskformer2_R50_bs16_50ep.yaml -> Base-COCO-PanopticSegmentation.yaml INPUT.MIN_SIZE_TEST 800, '
           'MAX_SIZE_TEST 1333 (detectron2 ResizeShortestEdge, PIL bilinear)',
    dataset='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/data/datasets/'
            'register_pascal_ctx_459_sem_seg.py (openvocab_pascal_ctx459_sem_seg_val, ignore 65535)',
    metric='detectron2 SemSegEvaluator (a class absent from both prediction and ground truth is skipped)')
