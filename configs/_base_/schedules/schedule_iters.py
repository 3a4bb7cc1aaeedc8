# Iteration-based training of the trainable parts of an ovseg model (the CLIP backbone stays frozen).
# 8k iterations of AdamW with linear warm-up and polynomial decay; methods override lr / max_iters.
max_iters = 8000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=200),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=200, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
