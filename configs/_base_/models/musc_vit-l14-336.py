# MuSc zero-shot (Li et al., ICLR 2024): OpenAI CLIP ViT-L/14@336 run at 518 px (37x37 patches),
# outputs of blocks 5/11/17/23, LNAMD over r = 1, 3, 5, mutual scoring against every other test image of
# the category (mean of the 30 % nearest images), RsCIN re-scoring of image scores.
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=0)
model = dict(
    type='ZeroShotAnomalySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-L-14-336', pretrained='openai'),
    head=dict(
        type='MuScHead',
        layers=(5, 11, 17, 23),
        r_list=(1, 3, 5),
        topmin_min=0.0,
        topmin_max=0.3,
        rscin_k=(1, 2, 3),
        extract_batch=8,
        chunk_elements=2**24))
# Test-time resize as MuSc's image transform (its vendored open_clip image_transform(518, is_train=False):
# torchvision Resize((518, 518), bicubic) on the PIL image, then CenterCrop(518), which keeps it whole).
test_resize = dict(type='Resize', scale=(518, 518), keep_ratio=False, interpolation='bicubic',
                   backend='pillow')
model_source = dict(
    resize='xrli-U/MuSc@e5457a61bd1e29da4c8b52b39c23c4de1aba5938 models/backbone/open_clip/transform.py '
           'image_transform (Resize((518, 518), BICUBIC) + CenterCrop on PIL images; datasets/mvtec.py reads '
           'them with PIL convert("RGB"))',
    scores='xrli-U/MuSc@b1847817fb9557c34b8cbd70ae750c3e7affa380 models/musc.py (layers 5/11/17/23, r 1/3/5, '
           'MSM 0-30 %, RsCIN k per dataset)')
