# MaskCLIP ViT-B/16 (OpenAI) + Trident-style SAM 2.1 Hiera-L refinement on COCO-Stuff 171
# (short side 448, slide 448 / 224): every confident region of the coarse map prompts SAM with
# a box, a point and its class's mask; masks with predicted IoU > 0.8 replace the region.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/models/sam2_hiera-l.py',
    '../_base_/datasets/coco_stuff171.py', '../_base_/default_runtime.py'
]
model = dict(
    vocabulary='maskclip/coco_stuff171',
    sam_refiner=_base_.sam2_refiner)
