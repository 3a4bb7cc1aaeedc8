# SAM 2.1 Hiera-L automatic masks (32x32 points, segment-anything's thresholds) classified by
# mask-pooled MaskCLIP ViT-B/16 (OpenAI) features on Cityscapes 19
# (short side 448, slide 448 / 224).
# Overlaps: mean of the masks' class probabilities; uncovered pixels: the dense CLIP scores.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/models/sam2_hiera-l.py',
    '../_base_/datasets/cityscapes19.py', '../_base_/default_runtime.py'
]
model = dict(
    type='SAMProposalSegmentor', vocabulary='maskclip/cityscapes19',
    proposals=_base_.sam2_proposals, overlap='mean')
