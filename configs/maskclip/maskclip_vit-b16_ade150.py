# MaskCLIP ViT-B/16 (OpenAI CLIP), training-free, on ADE20K 150: short side 448, slide 448 / 224.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/datasets/ade150.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='maskclip/ade150')
