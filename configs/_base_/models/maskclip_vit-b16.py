# MaskCLIP (Zhou et al., ECCV 2022): frozen OpenAI CLIP ViT-B/16, value-path dense features of the last
# block, cosine similarity with text embeddings averaged over MaskCLIP's 85 templates (CLIP's 80 ImageNet
# templates + 5 scene templates) of MaskCLIP's own class names.
# Leaf configs set ``vocabulary`` ('maskclip/<dataset>') and ``background`` for datasets with a background
# class. The synonym-rich ovseg lists ('ade150', ...) are an option: --cfg-options model.vocabulary=ade150.
# OpenAI CLIP normalisation in 0-255 units (SegDataPreProcessor works on uint8 BGR images).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='OVSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai'),
    text_classifier=dict(type='OVTextClassifier', templates='maskclip85'),
    head=dict(type='OVSimilarityHead', logit_scale=100.0),
    vocabulary=None,
    # Slide windows of 448 with stride 224 on images resized to short side 448 (ClearCLIP / CLIP-DINOiser).
    test_cfg=dict(mode='slide', crop_size=448, stride=224, window_batch=8))
model_source = dict(
    templates='chongzhou96/MaskCLIP tools/maskclip_utils/prompt_engineering.py prompt_templates (85; read from '
              'the fork 1ucky40nc3/MaskCLIP@7043f0ee39f2ddcea007b6075693c5078b6b0394)',
    dense_features='chongzhou96/MaskCLIP mmseg/models/backbones/vit.py (last block: v, out_proj, residual, MLP)',
    scores='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 models/maskclip/maskclip.py '
           'cls_seg: softmax of 100 x cosine, averaged over windows (MaskCLIP itself averages the cosines; '
           'the argmax differs only where windows overlap)',
    inference='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 segmentation/configs/_base_/'
              'datasets/*.py test_cfg (slide 448 / 224), the protocol later papers evaluate MaskCLIP with',
    background_rule="ovseg's choice (MaskCLIP evaluated no dataset with background): the background class "
                    'scored with the stuff names of SCLIP / ClearCLIP configs/cls_voc21.txt, no threshold')
