# CLIP-DINOiser ViT-B/16 (open_clip LAION-2B) on Cityscapes 19: short side 448, slide 448 / 224.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/datasets/cityscapes19.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='clip_dinoiser/cityscapes19')
