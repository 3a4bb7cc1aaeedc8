# SAM 2.1 Hiera-L (Ravi et al. 2024) through transformers' Sam2Model, as the SAM backend of the SAM + CLIP
# configs in configs/sam2_clip/. Weights: the Hugging Face id below or a local folder written by
# save_pretrained (safetensors only), e.g.
#     --cfg-options model.sam_refiner.sam.pretrained=/data/sam2.1-hiera-large
# No `model` key here: leaf configs put these dicts into their model (`_base_.sam2_refiner`,
# `_base_.sam2_proposals`).
sam2 = dict(type='SAM2Predictor', pretrained='facebook/sam2.1-hiera-large')
# Trident's refinement settings (as configs/_base_/models/sam_vit-b.py). SAM 2 takes mask prompts in the
# documented (N, 1, 256, 256) layout only ('trident' reproduces a segment-anything quirk).
sam2_refiner = dict(
    type='SAMRefiner', sam=sam2, coarse_thresh=0.2, minimal_area=225, mask_coeff=0.005, iou_thresh=0.8,
    down_ratio=2, prompt_batch=32, failed_rule='reference', mask_prompt_layout='batched',
    resolution='original', image_multiple=16)
# The same thresholds as the segment-anything configs (SamAutomaticMaskGenerator's defaults, one crop layer),
# whatever the backend; SAM 2's own generator defaults to pred_iou_thresh=0.8 instead of 0.88.
sam2_proposals = dict(
    type='SAMAutomaticProposals', sam=sam2, points_per_side=32, points_per_batch=64, pred_iou_thresh=0.88,
    stability_score_thresh=0.95, stability_score_offset=1.0, box_nms_thresh=0.7, min_mask_region_area=0)
