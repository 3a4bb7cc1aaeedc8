# CLIP-DINOiser (Wysoczańska et al., 2024): MaskCLIP features of a frozen open_clip ViT-B/16 (LAION-2B)
# pooled by the correlations of a trained 3x3 conv (obj_proj) on block 10's ln_2 tokens, plus a trained
# 1x1 background head (bkg_decoder). Weights: tools/model_converters/clip_dinoiser_to_ovseg.py (official
# last.pt) or a checkpoint from configs/clip_dinoiser/clip_dinoiser_train_imagenet.py.
# Leaf configs set ``vocabulary`` ('clip_dinoiser/<dataset>': the datasets' plain CLASSES, one name per class,
# as CLIP-DINOiser's main_eval.py embeds them). The synonym-rich ovseg lists ('ade150', ...) are an option:
# --cfg-options model.vocabulary=ade150.
# OpenAI CLIP normalisation in 0-255 units (open_clip uses it for the LAION weights too).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='OVSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='laion2b_s34b_b88k'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    head=dict(type='OVSimilarityHead', logit_scale=100.0),
    # gamma: correlations below 0.2 do not pool; the tokens are resblocks[-3].ln_2 (block 10 of 12).
    refiner=dict(type='CLIPDINOiserRefiner', in_channels=768, proj_channels=256,
                 token_layer='resblocks.-3.ln_2', gamma=0.2),
    # Background rule: a location is background when its top probability < 0.99 and the background head's
    # objectness <= 0.5. optional=True: applied only when the vocabulary has a 'background' class
    # (VOC-21, COCO-Object, a demo prompt); PC-60 has one but the published protocol does not apply the rule
    # there, so its leaf config sets background=None.
    background=dict(thresh=0.99, objectness_thresh=0.5, optional=True),
    vocabulary=None,
    # Slide windows of 448 with stride 224 on images resized to short side 448 (every dataset).
    test_cfg=dict(mode='slide', crop_size=448, stride=224, window_batch=8))
model_source = dict(
    templates='wysoczanska/clip_dinoiser models/maskclip/maskclip.py MaskClipHead._embed_label with use_templates: '
              'True (configs/maskclip.yaml): models/maskclip/utils/prompt_templates.py imagenet_templates',
    refiner='wysoczanska/clip_dinoiser@d39307e1d1d33726fac61f48675eaf96eaa0e207 models/clip_dinoiser/'
            'clip_dinoiser.py (gamma 0.2, feats_idx -3, obj_proj 3x3, bkg_decoder 1x1)',
    scores='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 models/maskclip/maskclip.py '
           'cls_seg (softmax of 100 x cosine)',
    inference='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 segmentation/configs/_base_/'
              'datasets/*.py test_cfg (slide 448 / 224)',
    background_rule='wysoczanska/clip_dinoiser@c225055e84f79769f187818997332cc5f3767d89 main_eval.py '
                    "(apply_found for voc and coco_object only) + clip_dinoiser.py forward (top probability < "
                    'delta 0.99 and not sigmoid(bkg) > 0.5 -> class 0)')
