# Trident (Shi, Dong, Xu, ICCV 2025; YuHengsss/Trident): splice-then-segment, training-free.
# CLIP ViT-B/16 (OpenAI) and DINO ViT-B/16 run on 336 x 336 sub-windows (stride 224); DINO's final-norm
# features give CLIP's last block its attention (softmax((S - 1.2 mean S) * 3), negatives cut, the mean over
# all windows of the image), without residual or feed-forward; the windows' outputs are spliced (averaged)
# into one map. SAM ViT-B encodes the original image once (sides rounded up to 16): its last block's
# attention, kept where the head's value cosine exceeds min(cos_fac * row mean, 0.9), averaged over heads and
# row-normalised, aggregates the spliced map on SAM's valid grid; then ln_post, proj, cosine with the text
# (80 OpenAI templates) x 40, softmax over queries, max over a class's names, prob_thd; finally SAM
# refinement on the original image with the same SAM embedding.
# Sources: YuHengsss/Trident@a93b346d1b1dc55bc6f547da5b7d361ad449ae44 trident.py (Trident.__init__ defaults,
# get_trident_seg, get_sam_feat, postprocess_result), configs/base_config.py (beta 1.2, cos_fac 1.2,
# refine_neg_cos True, slide 336 / 224, SAM vit_b, sam_iou_thresh 0.8, coarse_thresh 0.2, minimal_area 225),
# as recorded by ../shared/parity/trident/manifest.json (hyper_parameters); leaves override per dataset.
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
sam_checkpoint = 'checkpoints/sam_vit_b_01ec64.pth'
model = dict(
    type='TridentSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained='openai',
                  attention=[dict(type='ExternalAffinityAttention', blocks=-1)], pos_mode='bicubic_scale'),
    # trident.py loads torch.hub dino_vitb16 whatever vfm_model says; here timm vit_base_patch16_224.dino
    vfm=dict(type='VFMBackbone', model_name='dino_vitb16', pretrained='dino', feature='norm'),
    sam_refiner=dict(
        type='SAMRefiner', sam=dict(type='SAMPredictor', arch='vit_b', checkpoint=sam_checkpoint),
        coarse_thresh=0.2, minimal_area=225, mask_coeff=0.005, iou_thresh=0.8, down_ratio=2, prompt_batch=32,
        failed_rule='reference', mask_prompt_layout='trident', resolution='original', image_multiple=16),
    aggregator=dict(type='SAMCorrelationAggregator', cos_fac=1.2, max_thresh=0.9, keep_negative=True,
                    head_chunk=2),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    vocabulary=None,
    logit_scale=40.0,
    prob_thd=0.0,
    beta=1.2,
    gamma=3.0,
    sam_refinement=True,
    sam_splits=1,
    test_cfg=dict(crop_size=336, stride=224, window_batch=8))
model_source = dict(
    pipeline='YuHengsss/Trident@a93b346d1b1dc55bc6f547da5b7d361ad449ae44 trident.py (get_trident_seg, '
             'get_windowed_imgs, get_sam_feat, postprocess_result; seg_utils/utils.py preprocess_image, '
             'sam_refinement), checked stage by stage against ../shared/parity/trident',
    templates="trident.py: openai_imagenet_template (prompts/imagenet_template.py), 80 templates",
    hyper_parameters='configs/base_config.py + configs/cfg_voc21.py as recorded by the trident parity manifest; '
                     'other datasets: configs/trident/README.md',
    dino="trident.py: torch.hub.load('facebookresearch/dino:main', 'dino_vitb16'), get_intermediate_layers(x)[0]")
