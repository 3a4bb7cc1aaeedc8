# SCLIP ViT-B/16 (OpenAI CLIP), training-free, on COCO-Stuff 171: short side 448, slide 224 / 112.
# Protocol of wangf3014/SCLIP@57fa9aa configs/cfg_coco_stuff164k.py.
_base_ = [
    '../_base_/models/sclip_vit-b16.py', '../_base_/datasets/coco_stuff171.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_coco_stuff171')
