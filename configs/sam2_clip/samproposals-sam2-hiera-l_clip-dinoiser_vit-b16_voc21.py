# SAM 2.1 Hiera-L automatic masks (32x32 points, segment-anything's thresholds) classified by
# mask-pooled CLIP-DINOiser ViT-B/16 (LAION-2B) features on PASCAL VOC 21
# (short side 448, slide 448 / 224).
# Overlaps: mean of the masks' class probabilities; uncovered pixels: the dense CLIP scores.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/models/sam2_hiera-l.py',
    '../_base_/datasets/voc21.py', '../_base_/default_runtime.py'
]
model = dict(
    type='SAMProposalSegmentor', vocabulary='clip_dinoiser/voc21',
    proposals=_base_.sam2_proposals, overlap='mean')
