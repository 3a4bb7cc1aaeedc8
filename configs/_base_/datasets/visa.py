# VisA test split of the official split_csv/1cls.csv: 12 categories, 2,162 images with pixel masks.
# Leaf configs put their method's resize (its model base's test_resize) into test_pipeline and set the
# metric resolution.
dataset_type = 'VisADataset'
data_root = 'data/VisA_20220922'
anomaly_meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                     'flip', 'flip_direction', 'reduce_zero_label', 'category', 'defect', 'anomaly_label',
                     'reference_paths')
test_pipeline = [
    # PIL decoding, as every anomaly reference reads its images (Image.open(path).convert('RGB')).
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(240, 240), keep_ratio=False, interpolation='bicubic', backend='pillow'),
    dict(type='LoadAnomalyMask'),
    dict(type='PackSegInputs', meta_keys=anomaly_meta_keys),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split_csv='split_csv/1cls.csv', split='test',
                 pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(type='AnomalyMetric', fpr_limit=0.3)
val_evaluator = test_evaluator
