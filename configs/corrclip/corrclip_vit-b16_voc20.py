# CorrCLIP ViT-B/16 (MetaCLIP) + DINO ViT-B/8 + SAM 2 proposals, training-free, on PASCAL VOC 20: short side 336,
# slide 336 / 112. Protocol of zdk258/CorrCLIP@103bc18 CorrCLIPv2/configs/cfg_voc20.py.
# CorrCLIPv1's cfg_voc20.py is not in the stored copy; the CorrCLIPv2 config's pipeline is used (short side 336).
_base_ = [
    '../_base_/models/corrclip_vit-b16.py', '../_base_/datasets/voc20.py',
    '../_base_/default_runtime.py'
]
# CorrCLIP's released SAM 2 label maps (region_masks.zip of huggingface.co/datasets/dk258/CorrCLIP) under data/.
model = dict(vocabulary='corrclip_voc20', prob_thd=0.0,
             proposals=dict(type='PrecomputedLabelMaps', root='data/region_masks/voc'))
# The original's test pipeline: short side 336 (long side at most 2048); labels at full size.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 336), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
