# FC-CLIP's PASCAL VOC 21 protocol (fcclip_convnext_large_eval_pas21.yaml: semantic only), short side 800 /
# long side at most 1333 (PIL bilinear); background is class 0, scored with FC-CLIP's 74 background names.
# Descendants of FC-CLIP reuse this file.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
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
        type='CheckedPascalVOCDataset',
        data_root='data/VOCdevkit/VOC2012',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(type='OVIoUMetric', convention='detectron2')
val_evaluator = test_evaluator
vocabulary = 'fcclip/voc21'
outputs = dict(semantic_on=True, panoptic_on=False, instance_on=False)
data_source = dict(
    resize='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 configs/coco/panoptic-segmentation/'
           'maskformer2_R50_bs16_50ep.yaml -> Base-COCO-PanopticSegmentation.yaml INPUT.MIN_SIZE_TEST 800, '
           'MAX_SIZE_TEST 1333 (detectron2 ResizeShortestEdge, PIL bilinear)',
    dataset='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/data/datasets/'
            'register_pascal_voc_21_semantic.py (openvocab_pascal21_sem_seg_val, ignore 255)',
    metric='detectron2 SemSegEvaluator (a class absent from both prediction and ground truth is skipped)')
