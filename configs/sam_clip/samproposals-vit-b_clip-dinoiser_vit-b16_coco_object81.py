# SAM ViT-B automatic masks (32x32 points, SamAutomaticMaskGenerator defaults) classified by
# mask-pooled CLIP-DINOiser ViT-B/16 (LAION-2B) features on COCO-Object 81
# (short side 448, slide 448 / 224).
# Overlaps: mean of the masks' class probabilities; uncovered pixels: the dense CLIP scores.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/coco_object81.py', '../_base_/default_runtime.py'
]
model = dict(
    type='SAMProposalSegmentor', vocabulary='clip_dinoiser/coco_object81',
    proposals=_base_.sam_proposals, overlap='mean')
