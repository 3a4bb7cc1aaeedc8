# SAM ViT-B (official sam_vit_b_01ec64.pth, read with torch.load(weights_only=True)) for the SAM + CLIP
# configs in configs/sam_clip/. No `model` key here: leaf configs put these dicts into their model
# (`_base_.sam_refiner`, `_base_.sam_proposals`). Point sam_checkpoint at your copy of the file, e.g.
# --cfg-options model.sam_refiner.sam.checkpoint=/path/sam_vit_b_01ec64.pth.
sam_checkpoint = 'checkpoints/sam_vit_b_01ec64.pth'
sam = dict(type='SAMPredictor', arch='vit_b', checkpoint=sam_checkpoint)
# Trident's refinement settings (configs/base_config.py of YuHengsss/Trident; Cityscapes leaves override
# coarse_thresh=0.1). failed_rule / mask_prompt_layout: see configs/sam_clip/README.md.
sam_refiner = dict(
    type='SAMRefiner', sam=sam, coarse_thresh=0.2, minimal_area=225, mask_coeff=0.005, iou_thresh=0.8,
    down_ratio=2, prompt_batch=32, failed_rule='max_prob', mask_prompt_layout='trident')
# segment-anything's SamAutomaticMaskGenerator defaults (single crop layer).
sam_proposals = dict(
    type='SAMAutomaticProposals', sam=sam, points_per_side=32, points_per_batch=64, pred_iou_thresh=0.88,
    stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7, min_mask_region_area=0)
