# CLIP-DINOiser ViT-B/16 (open_clip LAION-2B) on PASCAL Context 60: short side 448, slide 448 / 224.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/datasets/pc60.py',
    '../_base_/default_runtime.py'
]
# PC-60 has a 'background' class, but the published protocol scores it with CLIP only (no rule).
model = dict(vocabulary='clip_dinoiser/pc60', background=None)
