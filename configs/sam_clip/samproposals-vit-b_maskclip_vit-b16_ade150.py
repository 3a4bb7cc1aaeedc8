# SAM ViT-B automatic masks (32x32 points, SamAutomaticMaskGenerator defaults) classified by
# mask-pooled MaskCLIP ViT-B/16 (OpenAI) features on ADE20K 150
# (short side 448, slide 448 / 224).
# Overlaps: mean of the masks' class probabilities; uncovered pixels: the dense CLIP scores.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/ade150.py', '../_base_/default_runtime.py'
]
model = dict(
    type='SAMProposalSegmentor', vocabulary='maskclip/ade150',
    proposals=_base_.sam_proposals, overlap='mean')
