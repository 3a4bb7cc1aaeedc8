# MaskCLIP ViT-B/16 (OpenAI CLIP), training-free, on PASCAL Context 60: short side 448, slide 448 / 224.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/datasets/pc60.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='maskclip/pc60')
