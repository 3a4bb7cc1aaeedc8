"""Test (and evaluate) an ovseg segmentor with mmengine's Runner.

Usage::

    python tools/test.py CONFIG [CHECKPOINT] [--random-weights] [--allow-missing-frozen]
                         [--work-dir DIR] [--out DIR] [--show-dir DIR] [--cfg-options k=v ...]
                         [--launcher none|pytorch|slurm|mpi]

CONFIG is a path (from any folder: repository paths such as ``configs/maskclip/...`` are found) or a
config name. Training-free methods (MaskCLIP) need no CHECKPOINT: their weights come from the config
(open_clip ``pretrained`` tag or ``checkpoint`` file). ``--random-weights`` removes every weight source (a
smoke test of the whole pipeline offline; the log and ``metrics.json`` say so). A CHECKPOINT is read with
``torch.load(weights_only=True)`` under the policy of :mod:`ovseg.apis.model_loading` (the one the Python
API uses), never by mmengine's ``load_from``: every key of the model must be there, unless
``--allow-missing-frozen`` lets the keys the model never trains (the frozen CLIP backbone, a dropped
teacher) keep the config's weights, as converted official checkpoints that hold only the trained parts
need. Mismatched keys and shapes stop the run with their names. The metrics also go to
``WORK_DIR/metrics.json`` with the weights they were computed with.

Distributed: ``torchrun --nproc_per_node=N tools/test.py CONFIG --launcher pytorch``; without GPUs the
processes use gloo and give the same metrics as one process.
"""
import argparse
import contextlib
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction  # light: the model stack is imported after argument parsing


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) an ovseg segmentor.')
    parser.add_argument('config', help='config file or name')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='weights-only checkpoint (optional for training-free methods)')
    parser.add_argument('--random-weights', action='store_true',
                        help='remove every pretrained tag and checkpoint path: a smoke test with meaningless '
                             'results (nothing is downloaded)')
    parser.add_argument('--allow-missing-frozen', action='store_true',
                        help='accept a checkpoint without the keys the model never trains (they keep the '
                             "config's weights)")
    parser.add_argument('--work-dir', help='folder for logs and metrics.json')
    parser.add_argument('--out', help='folder for the predicted label maps (one PNG per image)')
    parser.add_argument('--show-dir', help='folder for visualisations (image, ground truth, prediction)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.test_cfg.mode=whole')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if args.random_weights and args.checkpoint:
        parser.error('--random-weights and a CHECKPOINT exclude each other')
    if args.launcher != 'none':
        os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


@contextlib.contextmanager
def unwrapped(model):
    """The segmentor behind mmengine's wrappers, its separately wrapped submodules unwrapped meanwhile.

    ``MMSeparateDistributedDataParallel`` replaces trainable submodules with DDP wrappers, which would
    add ``.module`` to their state-dict keys. The parameters are the same tensors, so weights loaded
    into the unwrapped view are the ones the wrappers use.
    """
    from mmengine.model import is_model_wrapper
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
    if args.out:
        _set_output_dir(cfg, args.out)
    if args.show_dir:
        _enable_visualization(cfg, args.show_dir)
    return cfg


def _weights_note(args, checkpoint):
    if args.random_weights:
        return 'RANDOM (--random-weights: meaningless results, a smoke test)'
    return f'checkpoint {checkpoint}' if checkpoint else 'the config\'s weight sources'


def main(argv=None):
    """Run the test loop; return the metrics dict (e.g. ``{'mIoU': 41.2, ...}``)."""
    args = parse_args(argv)
    from mmengine.runner import Runner

    from ovseg.apis.model_loading import load_model_weights, strip_provided_parts, strip_weight_sources
    from ovseg.engine import prepare_distributed
    from ovseg.utils.checkpoint import load_state_dict_file
    cfg = build_config(args)
    # A checkpoint named in the config is loaded here too, never by mmengine's unrestricted loader.
    checkpoint = args.checkpoint or cfg.get('load_from')
    cfg.load_from = None
    cfg.resume = False
    if args.random_weights:  # (parse_args refuses a checkpoint beside it)
        removed = strip_weight_sources(cfg.model)
        print(f'--random-weights: the model has RANDOM weights (removed {removed or "nothing"}); the metrics '
              f'are meaningless: a smoke test of the pipeline only.', file=sys.stderr)
    state = load_state_dict_file(checkpoint) if checkpoint else None  # read once
    if state is not None:
        strip_provided_parts(cfg.model, state)  # the parts it holds are replaced: nothing downloaded
    prepare_distributed(cfg, args.launcher, testing=True)  # may start the gloo process group
    runner = Runner.from_cfg(cfg)
    if checkpoint:
        with unwrapped(runner.model) as model:
            load_model_weights(model, checkpoint, state, allow_missing_frozen=args.allow_missing_frozen,
                               logger=runner.logger)
        del state
    metrics = runner.test()
    note = _weights_note(args, checkpoint)
    runner.logger.info(f'Metrics computed with {note}.')
    if runner.rank == 0:
        with open(osp.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump(dict(config=args.config, weights=note, random_weights=bool(args.random_weights),
                           metrics={k: _plain(v) for k, v in metrics.items()}), f, indent=2)
    return metrics


def _plain(value):
    return value.item() if hasattr(value, 'item') else value


def cli(argv=None):
    """Command-line entry: exit code 2 and one sentence when pretrained weights cannot be had."""
    try:
        main(argv)
    except RuntimeError as err:
        from ovseg.models.backbones import WeightsUnavailableError
        if not isinstance(err, WeightsUnavailableError):
            raise
        print(f'{err} (or run with --random-weights for a smoke test)', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(cli())
