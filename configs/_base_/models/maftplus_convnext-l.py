# MAFT+ (Jiao et al., ECCV 2024; jiaosiyu1999/MAFT-Plus) with an open_clip ConvNeXt-Large CLIP
# (convnext_large_d_320, laion2b_s29b_b131k_ft_soup) whose trunk is fine-tuned: FC-CLIP's pixel decoder
# (6 deformable layers) and decoder (9 layers, 100 queries), the content-dependent transfer of the text
# embeddings (cdt_params [768, 8]) before the out-of-vocabulary classification, no in/out-of-vocabulary
# ensemble (the in-vocabulary logits only give the void probability). Values follow the released
# configs/semantic/eval.yaml (MAFTP-Large, trained on COCO-Stuff 171): object mask threshold 0.2, overlap
# 0.7. The panoptic model (configs/panoptic/eval.yaml, trained on COCO panoptic) changes the CDT residual
# and the training vocabulary (leaf configs). dense_embedding='released' reproduces the original's
# channel-mixing reshape of the dense CLIP map (configs/maftplus/README.md).
clip_mean = [122.7709383, 116.7460125, 104.09373615]
clip_std = [68.5005327, 66.6321579, 70.32316305]
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=clip_mean, std=clip_std, bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
    size_divisor=32)
model = dict(
    type='MAFTPlusSegmentor',
    data_preprocessor=data_preprocessor,
    # the trunk (stem, stages, norm_pre) is fine-tuned; its weights come with the converted checkpoint
    backbone=dict(type='OpenCLIPBackbone', model_name='convnext_large_d_320',
                  pretrained='laion2b_s29b_b131k_ft_soup',
                  trainable=('visual.trunk.stem', 'visual.trunk.stages', 'visual.trunk.norm_pre')),
    pixel_decoder=dict(type='FCCLIPPixelDecoder', conv_dim=256, mask_dim=256, num_layers=6, num_heads=8,
                       num_points=4, ffn_dim=1024, dropout=0.0, num_groups=32, common_stride=4),
    transformer_decoder=dict(
        type='FCCLIPTransformerDecoder', in_channels=256, hidden_dim=256, num_queries=100, num_heads=8,
        ffn_dim=2048, num_layers=9, pre_norm=False, mask_dim=256,
        class_head=dict(type='FCCLIPInVocabClassifier', hidden_dim=256, text_dim=768)),
    cdt=dict(type='ContentDependentTransfer', embed_dim=768, num_heads=8, residual='semantic'),
    dense_embedding='released',
    # training configs add ``teacher`` (representation compensation): the frozen pretrained CLIP
    text_classifier=dict(type='OVTextClassifier', templates='vild14'),
    out_vocab_classifier=dict(type='FCCLIPOutVocabClassifier'),
    criterion=dict(type='MaskSetCriterion', class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                   no_object_weight=0.1, num_points=112 * 112, oversample_ratio=3.0,
                   importance_sample_ratio=0.75, deep_supervision=True),
    mask_aware_loss=dict(type='MAFTMaskAwareLoss'),
    rc_loss=dict(type='MAFTRepresentationCompensationLoss', loss_weight=0.1),
    train_vocabulary='coco_stuff171',
    vocabulary='coco_stuff171',
    thing_classes=None,
    test_cfg=dict(semantic_on=True, panoptic_on=False, instance_on=False, object_mask_threshold=0.2,
                  overlap_threshold=0.7, max_per_image=100),
    size_divisor=32)
