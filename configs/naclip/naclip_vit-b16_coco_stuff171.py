# NACLIP ViT-B/16 (OpenAI CLIP), training-free, on COCO-Stuff 171: short side 448, slide 224 / 112.
# Protocol of sinahmr/NACLIP@0cac3a6 (configs at cbb720d) configs/cfg_coco_stuff164k.py.
_base_ = [
    '../_base_/models/naclip_vit-b16.py', '../_base_/datasets/coco_stuff171.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_coco_stuff171')
