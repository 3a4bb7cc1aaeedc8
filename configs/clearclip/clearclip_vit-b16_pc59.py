# ClearCLIP ViT-B/16 (OpenAI CLIP), training-free, on PASCAL Context 59: short side 448, slide 448 / 224.
# Protocol of mc-lan/ClearCLIP@fd05ce4 configs/cfg_context59.py;
# ClearCLIP ships only cls_voc21.txt: the classes are SCLIP's file of the same name, which its config names.
_base_ = [
    '../_base_/models/clearclip_vit-b16.py', '../_base_/datasets/pc59.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_pc59')
