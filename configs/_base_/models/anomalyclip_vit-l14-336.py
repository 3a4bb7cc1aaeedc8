# AnomalyCLIP (Zhou et al., ICLR 2024; zqhang/AnomalyCLIP): OpenAI CLIP ViT-L/14@336 run at 518 px
# (37x37 patches); 12 learnable tokens before "object." / "damaged object.", learnable text-layer tokens
# (4 per block) up to text block 9, V-V attention (DPAM) in the last 19 vision blocks, maps from blocks
# 6/12/18/24 (softmax(cos / 0.07), summed, Gaussian sigma 4); image score softmax(cos / 0.07) of the
# class token. Trained with CE + 4 x (focal + dice + dice) on an auxiliary dataset's test split.
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type='AnomalyCLIPSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-L-14-336', pretrained='openai'),
    head=dict(
        type='AnomalyCLIPHead',
        n_ctx=12,
        text_depth=9,
        text_n_ctx=4,
        features=(6, 12, 18, 24),
        vv_blocks=19,
        temperature=0.07,
        sigma=4,
        lam=4,
        fp16_deep_prompts=True))
# Test-time resize as AnomalyCLIP's utils.get_transform: torchvision Resize((518, 518), bicubic) on the PIL
# image, CenterCrop(518), which keeps it whole.
test_resize = dict(type='Resize', scale=(518, 518), keep_ratio=False, interpolation='bicubic',
                   backend='pillow')
model_source = dict(
    resize='zqhang/AnomalyCLIP utils.py get_transform (PIL Resize((image_size, image_size), BICUBIC) + '
           'CenterCrop), test.sh image_size 518',
    scores='zqhang/AnomalyCLIP AnomalyCLIP_lib / test.py (DPAM in the last 19 blocks, layers 6/12/18/24)')
