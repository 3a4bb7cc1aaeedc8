"""FC-CLIP training end to end: ``tools/train.py configs/fcclip/fcclip_convnext-l_coco-panoptic_train.py``
with the tiny model on generated COCO panoptic train2017 / val2017 (LSJ at 64 px) lowers the loss and
writes a checkpoint that ``tools/test.py`` evaluates (mIoU, PQ, AP) with the same config.

``tools/test.py configs/fcclip_ade.py CKPT`` on a generated ADE20K panoptic layout is in
``test_fcclip_tools.py`` (with the checkpoint converter).
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

import ovseg.models.fcclip  # noqa: F401  registers FC-CLIP
from ovseg.registry import DATASETS
from ovseg.testing.fcclip import tiny_fcclip_cfg
from ovseg.testing.panoptic_data import make_coco_panoptic_layout
from ovseg.text import load_vocabulary

REPO = Path(__file__).resolve().parents[2]
TINY_KEYS = ('backbone', 'pixel_decoder', 'transformer_decoder', 'text_classifier', 'criterion', 'test_cfg')


def load_tool(relative):
    path = REPO / 'tools' / relative
    spec = importlib.util.spec_from_file_location(f'ovseg_tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flatten(prefix, value):
    """Nested dict -> ['a.b=value', ...] for --cfg-options."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f'{prefix}.{k}', v)]
    if isinstance(value, (list, tuple)):
        return [f'{prefix}=[{",".join(str(v) for v in value)}]']
    return [f'{prefix}={value}']


def tiny_model_options():
    """--cfg-options turning the ConvNeXt-L FC-CLIP of a config into the tiny random one."""
    tiny = tiny_fcclip_cfg()
    options = ['model.backbone.pretrained=None']
    for key in TINY_KEYS:
        options += _flatten(f'model.{key}', tiny[key])
    return options


def loader_options(name, root, scale=None):
    options = [f'{name}.dataset.data_root={root}', f'{name}.num_workers=0',
               f'{name}.persistent_workers=False']
    return options + ([f'{name}.dataset.pipeline.1.scale={scale}'] if scale else [])


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    make_coco_panoptic_layout(root, split='train2017', num_images=4, seed=0)
    make_coco_panoptic_layout(root, split='val2017', num_images=2, seed=1)
    return root


def test_tiny_training_lowers_the_loss_and_the_checkpoint_evaluates(tmp_path, coco_root):
    config = 'configs/fcclip/fcclip_convnext-l_coco-panoptic_train.py'
    iters = 10
    lsj = 'train_dataloader.dataset.pipeline'
    options = tiny_model_options() + loader_options('train_dataloader', coco_root) + loader_options(
        'val_dataloader', coco_root, '(96,64)') + [
        f'{lsj}.3.scale=(64,64)', f'{lsj}.4.crop_size=(64,64)', f'{lsj}.5.size=(64,64)',
        'optim_wrapper.type=OptimWrapper',  # AMP needs a GPU
        'optim_wrapper.optimizer.lr=0.003', f'train_cfg.max_iters={iters}', 'train_cfg.val_interval=1000',
        f'default_hooks.checkpoint.interval={iters}', 'default_hooks.logger.interval=1']
    work = tmp_path / 'work'
    load_tool('train.py').main([config, '--work-dir', str(work), '--cfg-options', *options])
    ckpt = torch.load(work / f'iter_{iters}.pth', map_location='cpu', weights_only=True)
    losses = [float(v) for v in ckpt['message_hub']['log_scalars']['train/loss']['log_history']]
    assert len(losses) == iters
    # per-iteration losses (deep supervision over 3 decoder outputs, ~48 at the start); with seed 0 the
    # last three average ~14% below the first three
    assert np.mean(losses[-3:]) < 0.93 * np.mean(losses[:3]), losses

    test_options = tiny_model_options() + loader_options('test_dataloader', coco_root, '(96,64)')
    metrics = load_tool('test.py').main([config, str(work / f'iter_{iters}.pth'), '--work-dir',
                                         str(tmp_path / 'test'), '--cfg-options', *test_options])
    assert {'mIoU', 'PQ', 'PQ_th', 'PQ_st', 'AP'} <= set(metrics)


# config -> (FC-CLIP's own class list, the general list whose names the dataset uses)
FCCLIP_CONFIGS = {
    'configs/fcclip_ade.py': ('fcclip/ade150', 'ade150'),
    'configs/fcclip/fcclip_convnext-l_ade847.py': ('fcclip/ade847', 'ade847'),
    'configs/fcclip/fcclip_convnext-l_pc59.py': ('fcclip/pc59', 'pc59'),
    'configs/fcclip/fcclip_convnext-l_pc459.py': ('fcclip/pc459', 'pc459'),
    'configs/fcclip/fcclip_convnext-l_voc20.py': ('fcclip/voc20', 'voc20'),
    'configs/fcclip/fcclip_convnext-l_voc21.py': ('fcclip/voc21', 'voc21'),
    'configs/fcclip/fcclip_convnext-l_cityscapes.py': ('fcclip/cityscapes19', 'cityscapes19'),
    'configs/fcclip/fcclip_convnext-l_coco-panoptic.py': ('coco_panoptic133', 'coco_panoptic133'),
    'configs/fcclip/fcclip_convnext-l_coco-panoptic_train.py': ('coco_panoptic133', 'coco_panoptic133'),
}


@pytest.mark.parametrize('path', sorted(FCCLIP_CONFIGS))
def test_fcclip_configs(path):
    """FC-CLIP's own class list, one class per dataset class; panoptic configs score all three tasks
    with the same things."""
    cfg = Config.fromfile(str(REPO / path))
    dataset = cfg.test_dataloader.dataset
    meta = DATASETS.get(dataset.type).METAINFO
    classes = tuple(c.strip() for c in dataset.get('metainfo', {}).get('classes', meta['classes']))
    vocabulary, general = FCCLIP_CONFIGS[path]
    assert cfg.model.vocabulary == vocabulary
    names = tuple(load_vocabulary(general).names)
    assert len(load_vocabulary(vocabulary)) == len(classes)
    if general == 'coco_panoptic133':  # FC-CLIP's names ('tree' for 'tree-merged'), same order
        assert len(names) == len(classes) == 133 and names[:49] == classes[:49]
    else:
        assert classes == names
    assert cfg.model.train_vocabulary == 'coco_panoptic133'
    assert cfg.model.text_classifier.templates == 'vild14'
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    assert evaluators[0]['type'] == 'OVIoUMetric' and evaluators[0]['convention'] == 'detectron2'
    panoptic = 'thing_classes' in meta
    expected = ['OVPanopticMetric', 'OVInstanceAPMetric'] if panoptic else []
    assert [e['type'] for e in evaluators[1:]] == expected
    assert cfg.model.test_cfg.panoptic_on == cfg.model.test_cfg.instance_on == panoptic
    if panoptic:
        assert [classes[k] for k in cfg.model.thing_classes] == list(meta['thing_classes'])
