# FC-CLIP's Cityscapes protocol (fcclip_convnext_large_eval_cityscapes.yaml on
# openvocab_cityscapes_fine_panoptic_val): semantic mIoU, PQ and COCO-style mask AP (the published AP uses the
# Cityscapes instance protocol instead), short side 1024 / long side at most 2560 (PIL bilinear).
# Data: docs/datasets.md#cityscapes-panoptic. Descendants of FC-CLIP reuse this file.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 1024), keep_ratio=True, backend='pillow', interpolation='bilinear'),
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
        type='CityscapesPanopticDataset',
        data_root='data/cityscapes',
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
vocabulary = 'fcclip/cityscapes19'
# person, rider, car, truck, bus, train, motorcycle, bicycle
thing_classes = [11, 12, 13, 14, 15, 16, 17, 18]
outputs = dict(semantic_on=True, panoptic_on=True, instance_on=True)
data_source = dict(
    resize='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 configs/coco/panoptic-segmentation/'
           'fcclip/fcclip_convnext_large_eval_cityscapes.yaml INPUT.MIN_SIZE_TEST 1024, MAX_SIZE_TEST 2560 '
           '(detectron2 ResizeShortestEdge, PIL bilinear)',
    dataset='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/data/datasets/'
            'register_cityscapes_panoptic.py (openvocab_cityscapes_fine_panoptic_val, ignore 255)',
    metric='detectron2 SemSegEvaluator, COCOPanopticEvaluator; mask AP: pycocotools COCOeval on the '
           'panoptic thing segments (FC-CLIP reports the Cityscapes instance AP)')
