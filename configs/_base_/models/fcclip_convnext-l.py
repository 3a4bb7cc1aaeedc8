# FC-CLIP (Yu et al., NeurIPS 2023) with a frozen open_clip ConvNeXt-Large CLIP (convnext_large_d_320,
# laion2b_s29b_b131k_ft_soup): Mask2Former pixel decoder (6 deformable layers) and masked-attention
# decoder (9 layers, 250 queries), in-vocabulary + out-of-vocabulary (frozen CLIP) classifiers fused by
# the geometric ensemble (alpha 0.4 seen / beta 0.8 unseen). Values follow the released FC-CLIP configs.
# Leaf configs set ``vocabulary`` (+ ``thing_classes`` for panoptic / instance results): FC-CLIP's own lists
# come with the FC-CLIP dataset bases (configs/_base_/datasets/fcclip/).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
    size_divisor=32)
model = dict(
    type='FCCLIPSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='convnext_large_d_320',
                  pretrained='laion2b_s29b_b131k_ft_soup'),
    # in_channels default to the trunk's stage widths (192, 384, 768, 1536)
    pixel_decoder=dict(type='FCCLIPPixelDecoder', conv_dim=256, mask_dim=256, num_layers=6, num_heads=8,
                       num_points=4, ffn_dim=1024, dropout=0.0, num_groups=32, common_stride=4),
    transformer_decoder=dict(
        type='FCCLIPTransformerDecoder', in_channels=256, hidden_dim=256, num_queries=250, num_heads=8,
        ffn_dim=2048, num_layers=9, pre_norm=False, mask_dim=256,
        class_head=dict(type='FCCLIPInVocabClassifier', hidden_dim=256, text_dim=768)),
    text_classifier=dict(type='OVTextClassifier', templates='vild14'),
    out_vocab_classifier=dict(type='FCCLIPOutVocabClassifier'),
    criterion=dict(type='MaskSetCriterion', class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                   no_object_weight=0.1, num_points=112 * 112, oversample_ratio=3.0,
                   importance_sample_ratio=0.75, deep_supervision=True),
    ensemble=dict(alpha=0.4, beta=0.8, on_valid_mask=False),
    # the training vocabulary decides which test classes count as seen (alpha) or unseen (beta)
    train_vocabulary='coco_panoptic133',
    vocabulary='coco_panoptic133',
    thing_classes=None,
    test_cfg=dict(semantic_on=True, panoptic_on=True, instance_on=True, object_mask_threshold=0.0,
                  overlap_threshold=0.8, max_per_image=100),
    size_divisor=32)
model_source = dict(
    templates='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/fcclip.py VILD_PROMPT',
    seen='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/fcclip.py '
         'prepare_class_names_from_metadata (a test class is seen when one of its names is a name of the '
         'COCO panoptic training list)',
    ensemble='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 configs/coco/panoptic-segmentation/'
             'fcclip/fcclip_convnext_large_eval_ade20k.yaml (alpha 0.4, beta 0.8, 250 queries)',
    inference='bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/fcclip.py (whole image, '
              'padded to 32, semantic / panoptic / instance inference of Mask2Former)')
