# SAM ViT-B automatic masks (32x32 points, SamAutomaticMaskGenerator defaults) classified by
# mask-pooled MaskCLIP ViT-B/16 (OpenAI) features on PASCAL VOC 21
# (short side 448, slide 448 / 224).
# Overlaps: mean of the masks' class probabilities; uncovered pixels: the dense CLIP scores.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/voc21.py', '../_base_/default_runtime.py'
]
# MaskCLIP has no objectness score: the background class is scored with stuff names (as in
# configs/maskclip; the list equals ovseg.text.BACKGROUND_STUFF).
background_stuff = [
    'sky', 'wall', 'tree', 'wood', 'grass', 'road', 'sea', 'river', 'mountain', 'sands', 'desk',
    'bed', 'building', 'cloud', 'lamp', 'door', 'window', 'wardrobe', 'ceiling', 'shelf', 'curtain',
    'stair', 'floor', 'hill', 'rail', 'fence',
]
model = dict(
    type='SAMProposalSegmentor', vocabulary='maskclip/voc21',
    background=dict(names=background_stuff), proposals=_base_.sam_proposals, overlap='mean')
