# AnoVL zero-shot (Deng et al., arXiv 2308.15939; hq-deng/AnoVL): open_clip ViT-B-16-plus-240 (LAION-400M,
# `laion400m_e32` as in the reference's test_zero_shot.sh) at 240 px; every block dual-path (V-V attention),
# map from the last block's V-V tokens, domain-aware state prompts (7 + 7 states x 66 object / texture
# templates, unnormalised mean), softmax without temperature, 3x3 mean, bilinear (align_corners=True);
# image score averaged over 22 augmented views. Leaves add the per-image test-time adapter.
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type='ZeroShotAnomalySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16-plus-240', pretrained='laion400m_e32'),
    head=dict(
        type='AnoVLHead',
        prompts=dict(type='AnoVLStatePrompts'),  # textures: carpet, leather, grid, tile, wood
        layer=-1,
        temperature=1.0,
        smooth_kernel=3,
        align_corners=True,
        augment_views=True,
        view_batch=22,
        plain_softmax=True),  # adapter: None (training-free); the *_tta leaves add it
    # Category names go into the prompts with '_' -> ' ' (the reference keeps the underscore).
    class_names=dict())
