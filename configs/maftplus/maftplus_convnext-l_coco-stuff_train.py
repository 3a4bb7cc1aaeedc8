# MAFT+ ConvNeXt-L (MAFTP-Large) training on COCO-Stuff 171 train2017, the released
# configs/semantic/train_semantic_large.yaml: 55,000 iterations at batch 8 (1 image x 8 GPUs), Mask2Former's
# semantic mapper (short side 800, long <= 1333, random flip, no crop), AdamW lr 1e-4 weight decay 2e-5 (0
# for norm layers and embeddings), lr x0.1 for the CLIP trunk (BACKBONE_MULTIPLIER), full-model gradient
# clipping at norm 0.01, poly schedule (power 0.9, no warm-up), fp16 AMP. The CLIP trunk (stem, stages) is
# fine-tuned; the mask head reads its features detached; losses: FC-CLIP's (CE + mask BCE + dice, deep
# supervision), the mask-aware ranking loss and representation compensation (weight 0.1) against the frozen
# pretrained CLIP (teacher, in train mode as released). Validation every 5,000 iterations on ADE20K-150.
#   torchrun --nproc_per_node 8 tools/train.py configs/maftplus/maftplus_convnext-l_coco-stuff_train.py \
#       --launcher pytorch
# On a CPU, override optim_wrapper.type=OptimWrapper (AmpOptimWrapper needs a GPU).
# Data: docs/datasets.md (COCO-Stuff 164k converted with mmseg's coco_stuff164k.py: *_labelTrainIds.png).
_base_ = [
    '../_base_/models/maftplus_convnext-l.py', '../_base_/datasets/ade150.py', '../_base_/default_runtime.py'
]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow', interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='CheckedCOCOStuffDataset',
        data_root='data/coco_stuff164k',
        data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'),
        pipeline=train_pipeline))
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
model = dict(
    teacher=dict(type='OpenCLIPBackbone', model_name='convnext_large_d_320',
                 pretrained='laion2b_s29b_b131k_ft_soup', train_mode=('visual.trunk',)),
    vocabulary='fcclip/ade150', train_vocabulary='coco_stuff171')

max_iters = 55000
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=2e-5),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    # detectron2's build_optimizer as MAFT+ configures it: lr x0.1 inside 'backbone', no decay for norm
    # layers and nn.Embedding modules
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'transformer_decoder.query_feat': dict(decay_mult=0.0),
            'transformer_decoder.query_embed': dict(decay_mult=0.0),
            'transformer_decoder.level_embed': dict(decay_mult=0.0),
            'void_embedding': dict(decay_mult=0.0),
        }))
param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, by_epoch=False, begin=0, end=max_iters)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3))
auto_scale_lr = dict(enable=False, base_batch_size=8)
randomness = dict(seed=123)
