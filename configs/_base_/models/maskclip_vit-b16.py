# MaskCLIP (Zhou et al., ECCV 2022): frozen OpenAI CLIP ViT-B/16, value-path dense features of the last
# block, cosine similarity with text embeddings averaged over CLIP's 80 ImageNet templates.
# Leaf configs set ``vocabulary`` (and ``background`` for datasets with a background class).
# OpenAI CLIP normalisation in 0-255 units (SegDataPreProcessor works on uint8 BGR images).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='OVSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    head=dict(type='OVSimilarityHead', logit_scale=100.0),
    vocabulary=None,
    # Slide windows of 448 with stride 224 on images resized to short side 448 (ClearCLIP / CLIP-DINOiser).
    test_cfg=dict(mode='slide', crop_size=448, stride=224, window_batch=8))
