"""Distributed settings for tools/train.py and tools/test.py that also work without GPUs.

mmengine 0.10's ``pytorch`` launcher always calls ``torch.cuda.set_device`` and its default model wrapper
passes ``device_ids`` to DDP, so neither works on CPU; plain DDP also refuses a model with nothing to
train (MaskCLIP). Without GPUs the process group is therefore initialised here (gloo, from torchrun's
environment variables) before the Runner is built; the Runner then finds it initialised and skips its
own launcher.
"""
import datetime

import torch
import torch.distributed as dist


def default_model_wrapper(testing, find_unused_parameters=False):
    """``model_wrapper_cfg`` for a distributed run.

    Args:
        testing (bool): True for evaluation: ``MMSeparateDistributedDataParallel`` leaves frozen
            submodules unwrapped (no gradients are synchronised when testing anyway).
        find_unused_parameters (bool): passed to DDP. Default False.

    Returns:
        dict or None: None means mmengine's default (DDP on the GPU of the local rank).
    """
    cuda = torch.cuda.is_available()
    if cuda and not testing:
        return None
    wrapper = dict(type='MMSeparateDistributedDataParallel' if testing else 'MMDistributedDataParallel',
                   broadcast_buffers=False, find_unused_parameters=find_unused_parameters)
    if not cuda:
        wrapper['device_ids'] = None  # torch DDP takes no device ids for CPU modules
    return wrapper


def prepare_distributed(cfg, launcher, testing):
    """Set ``cfg`` up for ``launcher``; without GPUs also start the gloo process group.

    Args:
        cfg (mmengine.Config): the run's config (``model_wrapper_cfg`` / ``env_cfg`` are filled in unless
            the config sets them).
        launcher (str): 'none', 'pytorch', 'slurm' or 'mpi'.
        testing (bool): see :func:`default_model_wrapper`.

    Raises:
        SystemExit: no GPU and a launcher other than 'pytorch' (mmengine's need CUDA).
    """
    if launcher == 'none':
        return
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = default_model_wrapper(testing, cfg.get('find_unused_parameters', False))
    if torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise SystemExit(f"--launcher {launcher} needs GPUs; on CPU use torchrun with --launcher pytorch.")
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        timeout = cfg.env_cfg.dist_cfg.get('timeout')
        kwargs = {} if timeout is None else dict(timeout=datetime.timedelta(seconds=timeout))
        dist.init_process_group(backend='gloo', **kwargs)  # env:// from torchrun's variables
