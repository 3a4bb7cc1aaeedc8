# SCLIP (Wang et al., ECCV 2024; wangf3014/SCLIP): frozen OpenAI CLIP ViT-B/16 whose last block uses
# correlative self-attention softmax(q q^T s) + softmax(k k^T s) (residual and FFN kept). Windows give
# cosine logits per query (class-file synonym), averaged over slide windows 224 / 112, resized to the
# original image, then softmax(logit_scale * logits) over queries, max over a class's queries, prob_thd
# (and the VOC area rule). Positional embeddings resized as DINO does (scale factor (g + 0.1) / 14).
# Leaf configs set the vocabulary (SCLIP's class files), logit_scale, prob_thd, area_thd and the resize.
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='OVQuerySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai',
                  attention=[dict(type='CorrelativeAttention', blocks=-1)], pos_mode='bicubic_scale'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    vocabulary=None,
    logit_scale=40.0,
    prob_thd=0.0,
    area_thd=None,
    crop_pad='none',
    test_cfg=dict(mode='slide', crop_size=224, stride=112, window_batch=8))
