# FC-CLIP's COCO panoptic protocol (fcclip_convnext_large_eval_coco.yaml on
# openvocab_coco_2017_val_panoptic_with_sem_seg, its training data): semantic mIoU, PQ and mask AP, short side
# 800 / long side at most 1333 (PIL bilinear). Data: docs/datasets.md#coco-panoptic. Descendants of FC-CLIP
# reuse this file.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
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
        type='COCOPanopticDataset',
        data_root='data/coco',
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
vocabulary = 'coco_panoptic133'
thing_classes = list(range(80))  # the 80 COCO things come first
outputs = dict(semantic_on=True, panoptic_on=True, instance_on=True)
data_source = dict(
    resize='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 configs/coco/panoptic-segmentation/'
           'maskformer2_R50_bs16_50ep.yaml -> Base-COCO-PanopticSegmentation.yaml INPUT.MIN_SIZE_TEST 800, '
           'MAX_SIZE_TEST 1333 (detectron2 ResizeShortestEdge, PIL bilinear)',
    dataset='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/data/datasets/'
            'register_coco_panoptic_annos_semseg.py (openvocab_coco_2017_val_panoptic_with_sem_seg)',
    metric='detectron2 SemSegEvaluator, COCOPanopticEvaluator; mask AP: pycocotools COCOeval on the '
           'panoptic thing segments (detectron2 reads instances_val2017.json polygons)')
