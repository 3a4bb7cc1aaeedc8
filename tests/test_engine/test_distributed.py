"""Distributed settings of the tools (the torchrun + gloo run itself is checked by hand, see the report)."""
import pytest
import torch
from mmengine.config import Config

from ovseg.engine import default_model_wrapper, prepare_distributed

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU settings')


def test_cpu_wrappers_take_no_device_ids():
    test_wrapper = default_model_wrapper(testing=True)
    assert test_wrapper['type'] == 'MMSeparateDistributedDataParallel' and test_wrapper['device_ids'] is None
    train_wrapper = default_model_wrapper(testing=False, find_unused_parameters=True)
    assert train_wrapper['type'] == 'MMDistributedDataParallel' and train_wrapper['find_unused_parameters']


def test_prepare_distributed_keeps_single_process_and_config_choices():
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    prepare_distributed(cfg, 'none', testing=True)
    assert cfg.get('model_wrapper_cfg') is None and cfg.env_cfg.dist_cfg.backend == 'nccl'
    with pytest.raises(SystemExit, match='torchrun'):
        prepare_distributed(Config(dict(model_wrapper_cfg=dict(type='Custom'))), 'slurm', testing=True)
