# CLIP-DINOiser ViT-B/16 (LAION-2B) + Trident-style SAM ViT-B refinement on COCO-Stuff 171
# (short side 448, slide 448 / 224): every confident region of the coarse map prompts SAM with
# a box, a point and its class's mask; masks with predicted IoU > 0.8 replace the region. As Trident,
# the refinement runs on the original image, with Trident's rule for rejected regions.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/coco_stuff171.py', '../_base_/default_runtime.py'
]
model = dict(
    vocabulary='clip_dinoiser/coco_stuff171',
    sam_refiner=_base_.sam_refiner)
