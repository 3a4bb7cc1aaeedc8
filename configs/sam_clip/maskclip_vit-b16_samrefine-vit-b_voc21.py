# MaskCLIP ViT-B/16 (OpenAI) + Trident-style SAM ViT-B refinement on PASCAL VOC 21
# (short side 448, slide 448 / 224): every confident region of the coarse map prompts SAM with
# a box, a point and its class's mask; masks with predicted IoU > 0.8 replace the region. As Trident,
# the refinement runs on the original image, with Trident's rule for rejected regions.
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
    vocabulary='maskclip/voc21', background=dict(names=background_stuff),
    sam_refiner=_base_.sam_refiner)
