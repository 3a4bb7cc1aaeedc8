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
# Test-time resize as AnoVL's get_data_transforms(240, 240): torchvision Resize((240, 240)) on the PIL
# image (bilinear, the default), CenterCrop(240), which keeps it whole.
test_resize = dict(type='Resize', scale=(240, 240), keep_ratio=False, interpolation='bilinear',
                   backend='pillow')
model_source = dict(
    resize='hq-deng/AnoVL vl_test.py get_data_transforms (PIL Resize((240, 240)) bilinear + CenterCrop)',
    scores='hq-deng/AnoVL test_zero_shot.sh / vl_test.py (V-V attention, domain-aware prompts)')
