# CLIP-DINOiser ViT-B/16 (open_clip LAION-2B) on COCO-Object 81: short side 448, slide 448 / 224.
# Background rule on: top probability < 0.99 and objectness <= 0.5 -> background (class 0).
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/datasets/coco_object81.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='clip_dinoiser/coco_object81')
