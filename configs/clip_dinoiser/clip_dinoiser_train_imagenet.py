# Train CLIP-DINOiser's two convolutions with the published recipe (Wysoczańska et al., 2024; the
# original train.py and configs/clip_dinoiser.yaml): 1,000 ImageNet train images, short side 448 + random
# 448 crop, horizontal flip, brightness jitter 0.5 (torchvision ColorJitter(0.5)); batch 16; AdamW with
# lr 5e-5 for obj_proj and 1e-2 for bkg_decoder (weight decay 0.01, torch's default), x0.1 at iteration
# 5,000; 100 epochs of ceil(1000 / 16) = 63 iterations = 6,300 iterations. Losses (weight 1 each):
# BCE of obj_proj's correlations vs DINO ViT-B/16 value correlations >= 0.2, BCE of the background head
# vs FOUND saliency > 0.5. The CLIP backbone and the teachers are frozen.
#
# The teachers' weights are not downloaded: put them at the paths below or override them, e.g.
#   python tools/train.py configs/clip_dinoiser/clip_dinoiser_train_imagenet.py --cfg-options \
#     model.refiner.teacher.checkpoint=PATH/dino_vitbase16_pretrain.pth \
#     model.refiner.saliency_teacher.checkpoint=PATH/dino_deitsmall8_300ep_pretrain.pth \
#     model.refiner.saliency_teacher.decoder_checkpoint=PATH/decoder_weights.pt
# A missing file fails at model construction with the key to set and the official download address.
_base_ = ['../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/default_runtime.py']
# ImageFolderDataset and BrightnessJitter live in ovseg.datasets.image_folder.
custom_imports = dict(imports=['ovseg', 'ovseg.datasets.image_folder'], allow_failed_imports=False)

# DINO ViT-B/16 (https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth).
dino_checkpoint = 'checkpoints/dino_vitbase16_pretrain.pth'
# FOUND = DINO ViT-S/8 (https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_300ep_pretrain/
# dino_deitsmall8_300ep_pretrain.pth) + its 1x1 decoder (github.com/valeoai/FOUND data/weights/).
found_vit_checkpoint = 'checkpoints/dino_deitsmall8_300ep_pretrain.pth'
found_checkpoint = 'checkpoints/found_decoder_weights.pt'

crop_size = (448, 448)
model = dict(
    # Training batches are padded to the crop (only images smaller than 448 after resizing need it).
    data_preprocessor=dict(size=crop_size),
    vocabulary='voc21',  # text is not used in training; any vocabulary builds the segmentor
    refiner=dict(
        teacher=dict(type='DINOCorrelationTeacher', checkpoint=dino_checkpoint, gamma=0.2),
        saliency_teacher=dict(type='FOUNDSaliencyTeacher', checkpoint=found_vit_checkpoint,
                              decoder_checkpoint=found_checkpoint)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeShortestEdge', scale=448, max_size=4480),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='BrightnessJitter', strength=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='ImageFolderDataset',
        data_root='data/imagenet',
        data_prefix=dict(img_path='train'),
        # A fixed random subset: the first 1,000 sorted ImageNet images would all be one class (the
        # original draws 1,000 indices once with numpy, seed 0).
        max_images=1000,
        sample='random',
        seed=0,
        pipeline=train_pipeline))

max_iters = 6300
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # bkg_decoder: 5e-5 x 200 = 1e-2. The frozen CLIP parameters are never updated (no gradients).
    paramwise_cfg=dict(custom_keys={
        'refiner.obj_proj': dict(lr_mult=1.0),
        'refiner.bkg_decoder': dict(lr_mult=200.0),
    }),
    clip_grad=None)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[5000], gamma=0.1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
# Training only: evaluate the result with the benchmark configs, e.g.
#   python tools/test.py configs/clip_dinoiser/clip_dinoiser_vit-b16_voc21.py WORK_DIR/iter_6300.pth
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2,
                    save_last=True))
randomness = dict(seed=0)
