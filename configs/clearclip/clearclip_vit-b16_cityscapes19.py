# ClearCLIP ViT-B/16 (OpenAI CLIP), training-free, on Cityscapes 19: short side 448, slide 224 / 224.
# Protocol of mc-lan/ClearCLIP@fd05ce4 configs/cfg_city_scapes.py;
# ClearCLIP ships only cls_voc21.txt: the classes are SCLIP's file of the same name, which its config names.
_base_ = [
    '../_base_/models/clearclip_vit-b16.py', '../_base_/datasets/cityscapes19.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='sclip_cityscapes19',
             test_cfg=dict(mode='slide', crop_size=224, stride=224, window_batch=8))
