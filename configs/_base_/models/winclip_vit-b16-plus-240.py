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
# Test-time resize as anomalib's WinCLIP pre-processor: torchvision v2 Resize((240, 240), bicubic,
# antialias=True) on the float image, aspect ratio not kept, no clipping or rounding.
test_resize = dict(type='TorchvisionResize', scale=(240, 240), keep_ratio=False, interpolation='bicubic',
                   antialias=True)
model_source = dict(
    resize='openvinotoolkit/anomalib@03a2a2e9f4a9b5a76492a514f1babb44872702de src/anomalib/models/image/'
           'winclip/lightning_model.py configure_pre_processor (images read by PIL, /255, float resize)',
    prompts='openvinotoolkit/anomalib src/anomalib/models/image/winclip/prompting.py (7 normal / 4 '
            'anomalous states x 21 templates)',
    scores='openvinotoolkit/anomalib src/anomalib/models/image/winclip/torch_model.py (windows 2 and 3, '
           'harmonic aggregation, temperature 0.07)')
