"""Train the trainable parts of an ovseg segmentor with mmengine's Runner.

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume] [--amp] [--cfg-options k=v ...]
                          [--launcher none|pytorch|slurm|mpi]

Checkpoints are written by mmengine's ``CheckpointHook`` and made weights-only by ovseg's
``WeightsOnlyCheckpointHook`` (in ``configs/_base_/default_runtime.py``, added here if a config lacks it).
Every checkpoint this tool reads (``--resume``, ``load_from``) goes through
``torch.load(weights_only=True)`` whatever the torch version. Distributed: ``torchrun --nproc_per_node=N
tools/train.py CONFIG --launcher pytorch`` (gloo and CPU DDP when there is no GPU).
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction  # light: the model stack is imported after argument parsing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an ovseg segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints')
    parser.add_argument('--resume', action='store_true',
                        help='resume from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (mmengine AmpOptimWrapper, GPU only)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _enable_amp(cfg):
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("--amp needs a GPU (mmengine's AmpOptimWrapper); on CPU set the model's "
                         "precision='bf16' instead.")
    if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'


def build_config(args):
    """Config of the training run from the command-line arguments (a config path or name)."""
    from mmengine.config import Config
    from ovseg.configs import find_config
    path = find_config(args.config)
    cfg = Config.fromfile(path)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    if args.amp:
        _enable_amp(cfg)
    hooks = cfg.setdefault('custom_hooks', [])
    if not any(h.get('type') == 'WeightsOnlyCheckpointHook' for h in hooks):
        hooks.append(dict(type='WeightsOnlyCheckpointHook'))
    cfg.resume = args.resume
    return cfg


def main(argv=None):
    """Train; return the trained model."""
    args = parse_args(argv)
    from ovseg.engine import WeightsOnlyRunner, prepare_distributed  # importing ovseg registers its hooks
    cfg = build_config(args)
    prepare_distributed(cfg, args.launcher, testing=False)  # may start the gloo process group
    return WeightsOnlyRunner.from_cfg(cfg).train()


if __name__ == '__main__':
    main()
