# NACLIP (Hajimiri et al., WACV 2025; sinahmr/NACLIP): frozen OpenAI CLIP ViT-B/16 whose last block is
# 'reduced' (no residual, no FFN) with neighbourhood attention softmax(k k^T s + Gaussian(std 5) of the
# patch distance). Windows 224 / 112, cosine logits per query averaged, resized to the original image,
# PAMR (10 iterations, dilations 8 and 16, the normalised image as guide), softmax(40 * logits) over
# queries, max over a class's queries, prob_thd, then the class probabilities renormalised.
# Leaf configs set the vocabulary, prob_thd and the resize (and whole-image inference for VOC-21).
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='OVQuerySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai',
                  attention=[dict(type='NeighbourhoodAttention', blocks=-1, gaussian_std=5.0, residual=False,
                                  ffn=False)],
                  pos_mode='bicubic_scale'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    vocabulary=None,
    logit_scale=40.0,
    prob_thd=0.0,
    renormalize=True,
    crop_pad='none',
    postprocessors=[dict(type='PAMR', num_iter=10, dilations=(8, 16))],
    test_cfg=dict(mode='slide', crop_size=224, stride=112, window_batch=8))
