# FrozenSeg ConvNeXt-L + SAM ViT-B training on COCO panoptic train2017, the released recipe (run.sh with
# configs/coco/frozenseg/convnext_large_eval_ade20k.yaml over Mask2Former's COCO panoptic schedule, as
# FC-CLIP): 368,750 iterations at batch 16 (4 images x 4 GPUs in run.sh; set train_dataloader.batch_size
# for other GPU counts), large-scale jitter (random flip, resize to 0.1-2.0 of a 1024 square, 1024 crop
# padded with grey 128; SAM reads these 1024 crops directly), AdamW lr 1e-4 weight decay 0.05 (0 for norm
# layers and embeddings), full-model gradient clipping at norm 0.01, lr x0.1 at 327,778 and 355,092, fp16
# AMP. CLIP and SAM stay frozen (SAM's weights: segment-anything's sam_vit_b_01ec64.pth); validation every
# 5,000 iterations on COCO panoptic val (mIoU, PQ, AP).
#   torchrun --nproc_per_node 4 tools/train.py configs/frozenseg/frozenseg_convnext-l_coco-panoptic_train.py \
#       --launcher pytorch
# On a CPU, override optim_wrapper.type=OptimWrapper (AmpOptimWrapper needs a GPU).
_base_ = [
    '../_base_/models/frozenseg_convnext-l.py', '../_base_/datasets/coco_panoptic.py',
    '../_base_/default_runtime.py'
]
crop_size = (1024, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadPanopticAnnotations'),  # semantic map + segment ids, both resized / cropped / flipped
    dict(type='RandomFlip', prob=0.5),
    # LSJ (detectron2 ResizeScale + FixedSizeCrop): fit the image into a (1024 r)^2 square, r ~ U(0.1, 2.0),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    # take a random 1024 crop (the whole image when smaller),
    dict(type='RandomCrop', crop_size=crop_size),
    # and pad it to 1024 at the bottom / right (image 128, semantic map 255)
    dict(type='Pad', size=crop_size, pad_val=dict(img=128, seg=255)),
    dict(type='PackPanopticInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='COCOPanopticDataset',
        data_root='data/coco',
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(img_path='train2017', seg_map_path='annotations/panoptic_train2017'),
        pipeline=train_pipeline))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackPanopticInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
val_dataloader = test_dataloader
model = dict(
    sam=dict(checkpoint='checkpoints/sam_vit_b_01ec64.pth'),
    vocabulary='coco_panoptic133', train_vocabulary='coco_panoptic133',
    thing_classes=list(range(80)))  # the 80 COCO things come first in coco_panoptic133

max_iters = 368750
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    # detectron2's build_optimizer: no decay for norm layers and nn.Embedding modules
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'transformer_decoder.query_feat': dict(decay_mult=0.0),
            'transformer_decoder.query_embed': dict(decay_mult=0.0),
            'transformer_decoder.level_embed': dict(decay_mult=0.0),
            'void_embedding': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[327778, 355092], gamma=0.1)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=16)
randomness = dict(seed=0)
