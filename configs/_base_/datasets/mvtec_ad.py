# MVTec AD test split: 15 categories (5 textures, 10 objects), 1,725 images with pixel masks.
# Layout <data_root>/<category>/test/<defect>/*.png and <category>/ground_truth/<defect>/*_mask.png.
# Leaf configs put their method's resize (its model base's test_resize) into test_pipeline and set the
# metric resolution.
dataset_type = 'MVTecADDataset'
data_root = 'data/mvtec_ad'
# 'category' and 'anomaly_label' reach the model (prompt class names) and AnomalyMetric (per category);
# 'reference_paths' (datasets built with `references=...`) the few-shot models.
anomaly_meta_keys = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                     'flip', 'flip_direction', 'reduce_zero_label', 'category', 'defect', 'anomaly_label',
                     'reference_paths')
test_pipeline = [
    # PIL decoding, as every anomaly reference reads its images (Image.open(path).convert('RGB')).
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(240, 240), keep_ratio=False, interpolation='bicubic', backend='pillow'),
    # Masks are loaded after Resize: the maps are resized back to the original image size.
    dict(type='LoadAnomalyMask'),
    dict(type='PackSegInputs', meta_keys=anomaly_meta_keys),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
val_dataloader = test_dataloader
# Both AUPRO variants are reported: pixel_AUPRO_official (MVTec) and pixel_AUPRO_200thr (AnomalyCLIP / MuSc).
test_evaluator = dict(type='AnomalyMetric', fpr_limit=0.3)
val_evaluator = test_evaluator
