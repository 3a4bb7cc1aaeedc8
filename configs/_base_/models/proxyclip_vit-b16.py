# ProxyCLIP (Lan et al., ECCV 2024; mc-lan/ProxyCLIP): frozen OpenAI CLIP ViT-B/16 whose last block attends
# with a vision foundation model's affinity (proxy attention, DINO ViT-B/8 by default): softmax over keys of
# (S - 1.2 mean(S)) * 3 with negative entries excluded, S the cosine similarity of DINO's final-norm patch
# features; CLIP's values (class token dropped) resized to DINO's grid; no residual, no feed-forward.
# Windows 336 / 112 (zero-padded to multiples of 56) give cosine logits per query, averaged over windows,
# resized to the original image, then softmax(40 * logits), max over a class's queries, prob_thd.
# Positional embeddings (CLIP and DINO) resized as DINO does (scale factor (g + 0.1) / g0).
# Source: mc-lan/ProxyCLIP@05c3c18 proxyclip_segmentor.py, open_clip/transformer.py, configs/base_config.py.
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='ProxyCLIPSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai',
                  attention=[dict(type='ExternalAffinityAttention', blocks=-1)], pos_mode='bicubic_scale'),
    # vfm_model='dino' of base_config.py: torch.hub dino_vitb8, here timm vit_base_patch8_224.dino
    vfm=dict(type='VFMBackbone', model_name='dino_vitb8', pretrained='dino', feature='norm'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    vocabulary=None,
    logit_scale=40.0,
    prob_thd=0.0,
    beta=1.2,
    gamma=3.0,
    pad_multiple=56,
    test_cfg=dict(mode='slide', crop_size=336, stride=112, window_batch=8))
