# ClearCLIP (Lan et al., ECCV 2024; mc-lan/ClearCLIP): frozen OpenAI CLIP ViT-B/16 whose last block keeps
# only its query-query attention softmax(q q^T s) (no residual, no FFN). Windows of 448 / 224 (a window
# side that is not a multiple of 16 is zero-padded symmetrically), cosine logits per query averaged over
# windows, resized to the original image, softmax(50 * logits) over queries, max over a class's queries,
# prob_thd. Leaf configs set the vocabulary and prob_thd; images resized to short side 448.
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='OVQuerySegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai',
                  attention=[dict(type='QueryQueryAttention', blocks=-1, residual=False, ffn=False)],
                  pos_mode='bicubic_scale'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    vocabulary=None,
    logit_scale=50.0,
    prob_thd=0.0,
    crop_pad='symmetric',
    test_cfg=dict(mode='slide', crop_size=448, stride=224, window_batch=8))
