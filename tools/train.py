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

import torch
from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from ovseg.engine import prepare_distributed  # importing ovseg registers its hooks
from ovseg.utils.checkpoint import load_checkpoint_file


class WeightsOnlyRunner(Runner):
    """mmengine ``Runner`` whose checkpoint reads never unpickle arbitrary objects.

    mmengine 0.10 calls ``torch.load`` without ``weights_only``, which means ``False`` before torch 2.6.
    Only local files are accepted.
    """

    def load_checkpoint(self, filename, map_location='cpu', strict=False, revise_keys=((r'^module.', ''),)):
        """Same contract as :meth:`mmengine.runner.Runner.load_checkpoint`, read with weights_only=True."""
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        # WeightsOnlyCheckpointHook rebuilds the message hub's HistoryBuffers here.
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


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
    if not torch.cuda.is_available():
        raise SystemExit("--amp needs a GPU (mmengine's AmpOptimWrapper); on CPU set the model's "
                         "precision='bf16' instead.")
    if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'


def build_config(args):
    """Config of the training run from the command-line arguments."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
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
    cfg = build_config(args)
    prepare_distributed(cfg, args.launcher, testing=False)  # may start the gloo process group
    return WeightsOnlyRunner.from_cfg(cfg).train()


if __name__ == '__main__':
    main()
