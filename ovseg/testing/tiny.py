"""Tiny open_clip architectures and model configs: random weights, seconds on a CPU."""
import copy

# OpenAI CLIP normalisation in 0-255 units (mmseg's SegDataPreProcessor works on uint8 images).
CLIP_MEAN_255 = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD_255 = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]


def tiny_clip_arch(kind='vit', embed_dim=32):
    """An inline open_clip config for a tiny CLIP.

    Args:
        kind (str): 'vit' (patch 16, 2 blocks), 'resnet' (ModifiedResNet, 1 block per stage) or
            'convnext' (timm convnext_atto trunk). Default 'vit'.
        embed_dim (int): joint-space width. Default 32.
    """
    text_cfg = dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)
    if kind == 'vit':
        vision_cfg = dict(image_size=64, layers=2, width=32, head_width=16, patch_size=16)
    elif kind == 'resnet':
        vision_cfg = dict(image_size=64, layers=[1, 1, 1, 1], width=8, head_width=16)
    elif kind == 'convnext':
        vision_cfg = dict(timm_model_name='convnext_atto', timm_model_pretrained=False, timm_pool='',
                          timm_proj='mlp', timm_drop=0.0, image_size=64)
    else:
        raise ValueError(f"kind must be 'vit', 'resnet' or 'convnext', got {kind!r}")
    return dict(embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg)


def tiny_maskclip_cfg(vocabulary=('cat', 'dog', 'grass'), kind='vit', mode='whole', **overrides):
    """Model config of an ``OVSegmentor`` with a tiny random CLIP (no text cache on disk)."""
    cfg = dict(
        type='OVSegmentor',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255,
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255),
        backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch(kind)),
        text_classifier=dict(type='OVTextClassifier', templates='single', cache_dir=None),
        head=dict(type='OVSimilarityHead', logit_scale=100.0),
        vocabulary=list(vocabulary),
        test_cfg=dict(mode=mode, crop_size=64, stride=32, window_batch=4))
    cfg.update(copy.deepcopy(overrides))
    return cfg


def tiny_anomaly_cfg(head='WinCLIPFewShotHead', size=64, **head_kwargs):
    """A full config dict (model + test pipeline) of an anomaly segmentor with a tiny random ViT CLIP.

    Args:
        head (str): 'WinCLIPFewShotHead' (a ``FewShotAnomalySegmentor``: zero-shot without references),
            'WinCLIPHead' or 'MuScHead' (a ``ZeroShotAnomalySegmentor``). Default 'WinCLIPFewShotHead'.
        size (int): square network input side. Default 64 (4 x 4 patches).
        **head_kwargs: head arguments.
    """
    pre = dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255, bgr_to_rgb=True, pad_val=0,
               seg_pad_val=0)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(size, size), keep_ratio=False),
                dict(type='PackSegInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'category',
                                                      'reference_paths'))]
    model = dict(type='FewShotAnomalySegmentor' if head == 'WinCLIPFewShotHead' else 'ZeroShotAnomalySegmentor',
                 data_preprocessor=pre, backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit')),
                 head=dict(type=head, **head_kwargs))
    if head == 'WinCLIPFewShotHead':
        model['reference_pipeline'] = copy.deepcopy(pipeline)
    return dict(model=model, test_pipeline=pipeline)
