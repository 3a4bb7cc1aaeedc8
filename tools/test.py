"""Test (and evaluate) an ovseg segmentor with mmengine's Runner.

Usage::

    python tools/test.py CONFIG [CHECKPOINT] [--work-dir DIR] [--out DIR] [--show-dir DIR]
                         [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

Training-free methods (MaskCLIP) need no CHECKPOINT: their weights come from the config (open_clip
``pretrained`` tag or ``checkpoint`` file). A CHECKPOINT is read here with ``torch.load(weights_only=True)``
and never handed to mmengine's ``load_from``. Key policy: a key may be absent from the checkpoint only
when the model never trains it (a frozen parameter, or a buffer of a module whose parameters are all
frozen, i.e. the CLIP backbone); its value then comes from the config. Unexpected keys, other missing
keys and shape mismatches raise ``KeyError`` naming them.

Distributed: ``torchrun --nproc_per_node=N tools/test.py CONFIG --launcher pytorch``; without GPUs the
processes use gloo and give the same metrics as one process.
"""
import argparse
import contextlib
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from ovseg.engine import prepare_distributed
from ovseg.utils.checkpoint import load_state_dict_file


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) an ovseg segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='weights-only checkpoint (optional for training-free methods)')
    parser.add_argument('--work-dir', help='folder for logs and the metrics JSON')
    parser.add_argument('--out', help='folder for the predicted label maps (one PNG per image)')
    parser.add_argument('--show-dir', help='folder for visualisations (image, ground truth, prediction)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.test_cfg.mode=whole')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def frozen_keys(model):
    """State-dict keys the model never trains: frozen parameters and buffers of fully frozen modules."""
    keys = {name for name, param in model.named_parameters() if not param.requires_grad}
    for name, _ in model.named_buffers():
        owner = model.get_submodule(name.rpartition('.')[0]) if '.' in name else model
        params = list(owner.parameters())
        if params and not any(p.requires_grad for p in params):
            keys.add(name)
    return keys


def _listed(keys, limit=10):
    more = f' ... ({len(keys)} in all)' if len(keys) > limit else ''
    return f'{keys[:limit]}{more}'


def load_weights(model, path, logger=None):
    """Load a weights-only checkpoint into ``model`` under the key policy of this tool.

    Args:
        model (nn.Module): the segmentor (unwrapped from DDP if needed).
        path (str): checkpoint file (``state_dict`` / ``model`` wrappers are unwrapped).
        logger (logging.Logger, optional): reports how many frozen keys kept the config's weights.

    Returns:
        list[str]: frozen keys the checkpoint omitted.

    Raises:
        KeyError: unexpected keys, missing trainable keys or shape mismatches (all named).
    """
    state = load_state_dict_file(path)
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    frozen = frozen_keys(model)
    missing_trained = [k for k in missing if k not in frozen]
    shapes = [f'{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in sorted(set(state) & set(own))
              if state[k].shape != own[k].shape]
    if unexpected or missing_trained or shapes:
        raise KeyError(f'Checkpoint {path} does not match the model: '
                       f'unexpected keys {_listed(unexpected)}; '
                       f'missing trained keys {_listed(missing_trained)}; '
                       f'shape mismatches {_listed(shapes)}. '
                       f'Only frozen keys (the CLIP backbone) may be absent.')
    model.load_state_dict(state, strict=False)
    omitted = [k for k in missing if k in frozen]
    if logger is not None:
        logger.info(f'Loaded {len(state)} tensors from {path}'
                    + (f'; {len(omitted)} frozen keys keep the config weights' if omitted else ''))
    return omitted


@contextlib.contextmanager
def unwrapped(model):
    """The segmentor behind mmengine's wrappers, its separately wrapped submodules unwrapped meanwhile.

    ``MMSeparateDistributedDataParallel`` replaces trainable submodules with DDP wrappers, which would
    add ``.module`` to their state-dict keys. The parameters are the same tensors, so weights loaded
    into the unwrapped view are the ones the wrappers use.
    """
    model = model.module if is_model_wrapper(model) else model
    wrapped = {name: sub for name, sub in model._modules.items() if is_model_wrapper(sub)}
    for name, sub in wrapped.items():
        model._modules[name] = sub.module
    try:
        yield model
    finally:
        model._modules.update(wrapped)


def _enable_visualization(cfg, show_dir):
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError("--show-dir needs default_hooks.visualization=dict(type='SegVisualizationHook').")
    hooks['visualization']['draw'] = True
    hooks['visualization']['interval'] = 1  # SegVisualizationHook would draw only every 50th test image
    cfg.visualizer['save_dir'] = show_dir
    # With a fixed name mmengine hands back an earlier visualizer of this process, with its own save_dir.
    cfg.visualizer.pop('name', None)


def _set_output_dir(cfg, out_dir):
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    for evaluator in evaluators:
        if evaluator.get('type') in ('IoUMetric', 'OVIoUMetric'):
            evaluator['output_dir'] = out_dir  # both write one label PNG per image there


def build_config(args):
    """Config of the test run from the command-line arguments."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.out:
        _set_output_dir(cfg, args.out)
    if args.show_dir:
        _enable_visualization(cfg, args.show_dir)
    return cfg


def main(argv=None):
    """Run the test loop; return the metrics dict (e.g. ``{'mIoU': 41.2, ...}``)."""
    args = parse_args(argv)
    cfg = build_config(args)
    # A checkpoint named in the config is loaded here too, never by mmengine's unrestricted loader.
    checkpoint = args.checkpoint or cfg.get('load_from')
    cfg.load_from = None
    cfg.resume = False
    prepare_distributed(cfg, args.launcher, testing=True)  # may start the gloo process group
    runner = Runner.from_cfg(cfg)
    if checkpoint:
        with unwrapped(runner.model) as model:
            load_weights(model, checkpoint, runner.logger)
    return runner.test()


if __name__ == '__main__':
    main()
