# WinCLIP zero-shot (Jeong et al., CVPR 2023): open_clip ViT-B-16-plus-240 (LAION-400M) at 240 px, state
# prompt ensemble (7 normal / 4 anomalous states x 21 templates, unnormalised mean), 2x2 and 3x3 patch
# windows, harmonic aggregation over windows and over [image, scale 2, scale 3]; temperature 0.07.
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type='ZeroShotAnomalySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16-plus-240', pretrained='laion400m_e31'),
    head=dict(
        type='WinCLIPHead',
        scales=(2, 3),
        temperature=0.07,
        prompts=dict(type='AnomalyStatePrompts', prompt_set='winclip', normalize_prompts=False)),
    # Category names go into the prompts with '_' -> ' '; map any to a better name here.
    class_names=dict())
# Test-time resize of WinCLIP's references and queries (leaf configs put it into their test_pipeline).
test_resize = dict(type='Resize', scale=(240, 240), keep_ratio=False, interpolation='bicubic')
