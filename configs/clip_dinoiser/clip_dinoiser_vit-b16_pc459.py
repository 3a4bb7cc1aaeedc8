# CLIP-DINOiser ViT-B/16 (open_clip LAION-2B) on PASCAL Context 459: short side 448, slide 448 / 224.
# CLIP-DINOiser published no PC-459 setting: ovseg's pc459 names, scores rendered 64 classes at a time.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/datasets/pc459.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='pc459', test_cfg=_base_.large_vocabulary_test_cfg)
