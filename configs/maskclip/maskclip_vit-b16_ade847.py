# MaskCLIP ViT-B/16 (OpenAI CLIP), training-free, on ADE20K-Full (847 classes): short side 448, slide 448 / 224.
# MaskCLIP published no ADE-847 setting: ovseg's ade847 names, scores rendered 64 classes at a time.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/datasets/ade847.py',
    '../_base_/default_runtime.py'
]
model = dict(vocabulary='ade847', test_cfg=_base_.large_vocabulary_test_cfg)
