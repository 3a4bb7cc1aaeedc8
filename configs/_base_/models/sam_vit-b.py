# SAM ViT-B (official sam_vit_b_01ec64.pth, read with torch.load(weights_only=True)) for the SAM + CLIP
# configs in configs/sam_clip/. No `model` key here: leaf configs put these dicts into their model
# (`_base_.sam_refiner`, `_base_.sam_proposals`). Point sam_checkpoint at your copy of the file, e.g.
# --cfg-options model.sam_refiner.sam.checkpoint=/path/sam_vit_b_01ec64.pth.
sam_checkpoint = 'checkpoints/sam_vit_b_01ec64.pth'
sam = dict(type='SAMPredictor', arch='vit_b', checkpoint=sam_checkpoint)
# Trident's refinement (configs/base_config.py of YuHengsss/Trident; Cityscapes leaves override
# coarse_thresh=0.1), as trident.py runs it: on the original image (read again from its file, rounded up to
# a multiple of 16 for SAM) with the coarse scores resized to the original size, and Trident's rule for
# rejected regions. failed_rule / mask_prompt_layout: see configs/sam_clip/README.md; ovseg's 'max_prob'
# rule has its own configs (*_samrefine-maxprob-vit-b_*.py).
sam_refiner = dict(
    type='SAMRefiner', sam=sam, coarse_thresh=0.2, minimal_area=225, mask_coeff=0.005, iou_thresh=0.8,
    down_ratio=2, prompt_batch=32, failed_rule='reference', mask_prompt_layout='trident',
    resolution='original', image_multiple=16)
# segment-anything's SamAutomaticMaskGenerator defaults (single crop layer).
sam_proposals = dict(
    type='SAMAutomaticProposals', sam=sam, points_per_side=32, points_per_batch=64, pred_iou_thresh=0.88,
    stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7, min_mask_region_area=0)
sam_source = dict(
    sam_refinement='YuHengsss/Trident@a93b346d1b1dc55bc6f547da5b7d361ad449ae44 trident.py (get_trident_seg: '
                   'logits resized to ori_shape, SAM image = cv2 resize to multiples of 16; postprocess_result) '
                   'and seg_utils/utils.py sam_refinement; thresholds from configs/base_config.py',
    sam_proposals='facebookresearch/segment-anything segment_anything/automatic_mask_generator.py defaults')
