# SAM ViT-B automatic masks (32x32 points, SamAutomaticMaskGenerator defaults) classified by
# mask-pooled MaskCLIP ViT-B/16 (OpenAI) features on PASCAL Context 59
# (short side 448, slide 448 / 224).
# Overlaps: mean of the masks' class probabilities; uncovered pixels: the dense CLIP scores.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/pc59.py', '../_base_/default_runtime.py'
]
model = dict(
    type='SAMProposalSegmentor', vocabulary='maskclip/pc59',
    proposals=_base_.sam_proposals, overlap='mean')
