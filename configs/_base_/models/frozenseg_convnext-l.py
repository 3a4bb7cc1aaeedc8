# FrozenSeg (Chen et al., 2024; chenxi52/FrozenSeg) with a frozen open_clip ConvNeXt-Large CLIP
# (convnext_large_d_320, laion2b_s29b_b131k_ft_soup) and a frozen SAM ViT-B: FC-CLIP's pixel decoder
# (6 deformable layers) and masked-attention decoder (9 layers, 250 queries) with FrozenSeg's SAM branch
# (strided conv + deformable encoder on the SAM embedding), feature injector (decoder layers 0, 3, 6) and
# query injector (after layers 2, 5, 8); FC-CLIP's geometric ensemble (alpha 0.4 / beta 0.8). Values
# follow the released configs/coco/frozenseg/convnext_large_eval_ade20k.yaml and eval.sh
# (SAM_QUERY_FUSE_LAYER 2, SAM_FEATURE_FUSE_LAYER 0, SAM_NAME vit_b).
# behaviour='released' reproduces the released defects the released weights were trained with
# (configs/frozenseg/README.md); 'corrected' fixes them. Leaf configs set ``vocabulary`` (+
# ``thing_classes`` for panoptic / instance results).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
    size_divisor=32)
model = dict(
    type='FrozenSegSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='convnext_large_d_320',
                  pretrained='laion2b_s29b_b131k_ft_soup'),
    pixel_decoder=dict(type='FCCLIPPixelDecoder', conv_dim=256, mask_dim=256, num_layers=6, num_heads=8,
                       num_points=4, ffn_dim=1024, dropout=0.0, num_groups=32, common_stride=4),
    transformer_decoder=dict(
        type='FCCLIPTransformerDecoder', in_channels=256, hidden_dim=256, num_queries=250, num_heads=8,
        ffn_dim=2048, num_layers=9, pre_norm=False, mask_dim=256,
        class_head=dict(type='FCCLIPInVocabClassifier', hidden_dim=256, text_dim=768)),
    # frozen SAM ViT-B; its weights come with the converted FrozenSeg checkpoint (training: set
    # checkpoint='checkpoints/sam_vit_b_01ec64.pth', segment-anything's release)
    sam=dict(type='SAMPredictor', arch='vit_b', checkpoint=None),
    # sizes default to the pixel decoder's / decoder's
    sam_branch=dict(type='FrozenSegSAMBranch'),
    injector=dict(type='FrozenSegInjector', feature_level=0, query_level=2),
    behaviour='released',
    # the mask-proposal ensemble (TEST.USE_SAM_MASKS) is off in every released config
    use_proposals=False,
    proposal_ensemble=dict(alpha=0.2, keep_threshold=0.5),
    pixel_mean=clip_mean,
    pixel_std=clip_std,
    text_classifier=dict(type='OVTextClassifier', templates='vild14'),
    out_vocab_classifier=dict(type='FCCLIPOutVocabClassifier'),
    criterion=dict(type='MaskSetCriterion', class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                   no_object_weight=0.1, num_points=112 * 112, oversample_ratio=3.0,
                   importance_sample_ratio=0.75, deep_supervision=True),
    ensemble=dict(alpha=0.4, beta=0.8, on_valid_mask=False),
    train_vocabulary='coco_panoptic133',
    vocabulary='coco_panoptic133',
    thing_classes=None,
    test_cfg=dict(semantic_on=True, panoptic_on=True, instance_on=True, object_mask_threshold=0.0,
                  overlap_threshold=0.8, max_per_image=100),
    size_divisor=32)
