# MAFT+ ConvNeXt-L (MAFTP-Large, trained on COCO-Stuff 171) zero-shot on ADE20K-150, semantic only, as the
# released MAFT-Plus configs/semantic/eval.yaml (it scores ADE-150 on openvocab_ade20k_panoptic_val with
# SEMANTIC_ON only: the ADE semantic maps). Short side 800, long <= 1333; detectron2's mIoU convention.
#   python tools/model_converters/maftplus_to_ovseg.py maftp_l.pth maftp_l_ovseg.pth
#   python tools/test.py configs/maftplus/maftplus_convnext-l_ade150.py maftp_l_ovseg.pth
_base_ = [
    '../_base_/models/maftplus_convnext-l.py', '../_base_/datasets/ade150.py', '../_base_/default_runtime.py'
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
test_evaluator = dict(_delete_=True, type='OVIoUMetric', convention='detectron2')
val_evaluator = test_evaluator
model = dict(vocabulary='fcclip/ade150')
