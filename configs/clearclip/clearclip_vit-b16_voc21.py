# ClearCLIP ViT-B/16 (OpenAI CLIP), training-free, on PASCAL VOC 21: short side 448, slide 448 / 224.
# Protocol of mc-lan/ClearCLIP@fd05ce4 configs/cfg_voc21.py.
_base_ = [
    '../_base_/models/clearclip_vit-b16.py', '../_base_/datasets/voc21.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='clearclip_voc21', prob_thd=0.5)
