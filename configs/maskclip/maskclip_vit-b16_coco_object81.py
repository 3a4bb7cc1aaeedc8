# MaskCLIP ViT-B/16 (OpenAI CLIP), training-free, on COCO-Object 81: short side 448, slide 448 / 224.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/datasets/coco_object81.py',
    '../_base_/default_runtime.py'
]
# MaskCLIP has no objectness score, so the background class is scored with stuff names
# (SCLIP / ClearCLIP); the list equals ovseg.text.BACKGROUND_STUFF (a test checks it).
background_stuff = [
    'sky', 'wall', 'tree', 'wood', 'grass', 'road', 'sea', 'river', 'mountain', 'sands', 'desk',
    'bed', 'building', 'cloud', 'lamp', 'door', 'window', 'wardrobe', 'ceiling', 'shelf', 'curtain',
    'stair', 'floor', 'hill', 'rail', 'fence',
]
model = dict(vocabulary='maskclip/coco_object81', background=dict(names=background_stuff))
