# FC-CLIP's ADE20K-150 protocol (bytedance/fc-clip: fcclip_convnext_large_eval_ade20k.yaml on the dataset
# openvocab_ade20k_panoptic_val of fcclip/data/datasets/register_ade20k_panoptic.py): semantic mIoU
# (detectron2 convention), PQ and mask AP in one pass, short side 800 / long side at most 1333 (detectron2's
# ResizeShortestEdge, PIL bilinear). Mask AP scores against Mask2Former's ade20k_instance_val.json, the file
# FC-CLIP's COCOEvaluator reads (docs/datasets.md#ade-150-panoptic); the dataset passes its path to
# OVInstanceAPMetric. Descendants of FC-CLIP (FrozenSeg, MAFT+) reuse this file with their own model.
dataset_type = 'ADE20KPanopticDataset'
data_root = 'data/ade/ADEChallengeData2016'
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    # Annotations are loaded after Resize: metrics compare at the original resolution.
    dict(type='LoadAnnotations'),  # ADE semantic PNG; reduce_zero_label comes from the dataset (True)
    dict(type='LoadPanopticSegIds'),  # the panoptic PNG (pan_map_path)
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
        ann_file='ade20k_panoptic_val.json',
        instance_ann_file='ade20k_instance_val.json',
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation',
                         pan_map_path='ade20k_panoptic_val'),
        pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = [
    dict(type='OVIoUMetric', convention='detectron2'),
    dict(type='OVPanopticMetric'),
    dict(type='OVInstanceAPMetric'),
]
val_evaluator = test_evaluator
# FC-CLIP's class list (fcclip/data/datasets/ade20k_150_with_prompt_eng.txt) and ADE-150's 100 things.
vocabulary = 'fcclip/ade150'
thing_classes = [
    7, 8, 10, 12, 14, 15, 18, 19, 20, 22, 23, 24, 27, 30, 31, 32, 33, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45,
    47, 49, 50, 53, 55, 56, 57, 58, 62, 64, 65, 66, 67, 69, 70, 71, 72, 73, 74, 75, 76, 78, 80, 81, 82, 83,
    85, 86, 87, 88, 89, 90, 92, 93, 95, 97, 98, 102, 103, 104, 107, 108, 110, 111, 112, 115, 116, 118, 119,
    120, 121, 123, 124, 125, 126, 127, 129, 130, 132, 133, 134, 135, 136, 137, 138, 139, 142, 143, 144,
    146, 147, 148, 149,
]
outputs = dict(semantic_on=True, panoptic_on=True, instance_on=True)
data_source = dict(
    resize='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 configs/coco/panoptic-segmentation/'
           'maskformer2_R50_bs16_50ep.yaml -> Base-COCO-PanopticSegmentation.yaml INPUT.MIN_SIZE_TEST 800, '
           'MAX_SIZE_TEST 1333 (detectron2 ResizeShortestEdge, PIL bilinear)',
    dataset='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/data/datasets/'
            'register_ade20k_panoptic.py (openvocab_ade20k_panoptic_val, ignore 255, instances from '
            'ade20k_instance_val.json)',
    metric='detectron2 SemSegEvaluator (classes absent from prediction and ground truth skipped), '
           'COCOPanopticEvaluator, COCOEvaluator segm AP')
