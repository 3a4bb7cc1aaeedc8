# AdaptCLIP (Gao et al., AAAI 2026; gaobb/AdaptCLIP): OpenAI CLIP ViT-L/14@336 run at 518 px (37x37 patches),
# V-V attention (DPAM) in the last 19 vision blocks (the original's DAPM_replace(20)), taps 6/12/18/24; visual
# adapter (residual MLP, reduction 4) against the fixed prompt ensemble, textual adapter (12 learnable tokens)
# against the unadapted features, prompt-query adapter (hidden width 128, context fusion q + |q - p|, top-10
# image feature) against k normal references; branch maps averaged, Gaussian sigma 4 (test.py defaults and
# scripts/test_adaptclip.sh). Without reference images the model runs zero-shot (visual + textual adapters).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type='AdaptCLIPSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-L-14-336', pretrained='openai'),
    head=dict(
        type='AdaptCLIPHead',
        n_ctx=12,
        features=(6, 12, 18, 24),
        vv_blocks=19,
        vl_reduction=4,
        pq_mid_dim=128,
        pq_context=True,
        pq_topk=10,
        temperature=0.07,
        sigma=4,
        fusion='average_mean'))
# Test-time resize as AdaptCLIP's tools/utils.py get_transform: torchvision Resize((518, 518), bicubic) on the
# PIL image, CenterCrop(518), which keeps it whole; queries and references alike.
test_resize = dict(type='Resize', scale=(518, 518), keep_ratio=False, interpolation='bicubic',
                   backend='pillow')
model_source = dict(
    resize='gaobb/AdaptCLIP@354d9e3 tools/utils.py get_transform (PIL Resize((518, 518), BICUBIC) + CenterCrop)',
    scores='gaobb/AdaptCLIP@354d9e3 adaptcliplib/adaptclip.py, test.py (DAPM_replace(20), features 6/12/18/24, '
           'sigma 4, average_mean fusion; few-shot memory build_prompt_memory / prompt_association)',
    references='gaobb/AdaptCLIP dataset/dataset.py PromptDataset (torch.manual_seed(seed); '
               'torch.randint(0, n, (k_shots,)) per class over meta.json train images)')
