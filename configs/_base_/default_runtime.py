# Runtime shared by every ovseg config: registries, logging, hooks, visualisation.
default_scope = 'mmseg'
# Registers every ovseg module (models, datasets, hooks) into mmseg's registries.
custom_imports = dict(imports=['ovseg'], allow_failed_imports=False)

env_cfg = dict(
    # Off: whole/slide inference sees many input sizes, so cuDNN autotuning only costs time.
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py and tools/test.py switch this to 'gloo' when no GPU is present.
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
# No fixed name: mmengine returns an existing visualizer of the same name (with its old save_dir), so the
# Runner's unique experiment name is used instead.
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # Also the progress line of long test runs: one line with ETA every 50 images.
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draw=False: tools/test.py --show-dir turns drawing on.
    visualization=dict(type='SegVisualizationHook'))

# Checkpoints load with torch.load(weights_only=True): numpy/HistoryBuffer objects become plain values.
custom_hooks = [dict(type='WeightsOnlyCheckpointHook')]

val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
tta_model = dict(type='SegTTAModel')
