"""tools/train.py and tools/test.py on a tiny random CLIP segmentor and a generated two-image dataset.

Covers: evaluation without a checkpoint, predictions and visualisations on disk, training a test-only
refiner, weights-only checkpoints (``torch.load(weights_only=True)``), resuming, loading a trained
checkpoint in tools/test.py, the frozen-key policy and key-mismatch errors.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ovseg.apis import load_model_weights
from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_maskclip_cfg

REPO = Path(__file__).resolve().parents[2]
CLASSES = ('cat', 'dog', 'grass')
REFINER = 'ToolsTestResidualRefiner'  # registered by the `refiner_type` fixture for this module only




class ResidualRefiner(nn.Module):
    """Trainable 1x1 residual on the dense map; loss = mean square of the refined map."""

    def __init__(self, channels=32):
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, feats):
        return dataclasses.replace(feats, dense=feats.dense + self.proj(feats.dense.float()))

    def loss(self, feats, inputs, data_samples):
        return dict(loss_refine=self.forward(feats).dense.pow(2).mean())


@pytest.fixture(scope='module')
def refiner_type():
    MODELS.register_module(name=REFINER, module=ResidualRefiner)
    yield REFINER
    MODELS._module_dict.pop(REFINER, None)  # keep mmseg's registry as other test modules expect it


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """Two 64x96 images with 3-class label maps (255 = ignore) in an mmseg BaseSegDataset layout."""
    root = tmp_path_factory.mktemp('tiny_seg')
    rng = np.random.default_rng(0)
    for sub in ('img_dir', 'ann_dir'):
        (root / sub).mkdir()
    for name in ('a', 'b'):
        image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / 'img_dir' / f'{name}.png')
        label = rng.integers(0, 3, (64, 96), dtype=np.uint8)
        label[:4] = 255
        Image.fromarray(label).save(root / 'ann_dir' / f'{name}.png')
    return root


def _dataloader(root, pipeline, train=False):
    sampler = dict(type='InfiniteSampler' if train else 'DefaultSampler', shuffle=train)
    return dict(batch_size=2 if train else 1, num_workers=0, persistent_workers=False, sampler=sampler,
                dataset=dict(type='BaseSegDataset', data_root=str(root), img_suffix='.png',
                             seg_map_suffix='.png', metainfo=dict(classes=CLASSES), pipeline=pipeline,
                             data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir')))


def write_config(path, root, model, train=False):
    """A leaf config over the repository's runtime (and schedule when ``train``) for the tiny model."""
    test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(128, 64), keep_ratio=True),
                     dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    bases = [str(REPO / 'configs/_base_/default_runtime.py')]
    lines = [f'test_dataloader = {_dataloader(root, test_pipeline)!r}',
             'val_dataloader = test_dataloader',
             "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])",
             'val_evaluator = test_evaluator',
             f'model = {model!r}',
             "default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))"]
    if train:
        bases.append(str(REPO / 'configs/_base_/schedules/schedule_iters.py'))
        train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                          dict(type='RandomCrop', crop_size=(64, 64)), dict(type='PackSegInputs')]
        lines += [f'train_dataloader = {_dataloader(root, train_pipeline, train=True)!r}',
                  "train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=1000)",
                  'randomness = dict(seed=0)']
    path.write_text(f'_base_ = {bases!r}\n' + '\n'.join(lines) + '\n')
    return str(path)


def tiny_model(refiner=None):
    cfg = tiny_maskclip_cfg(CLASSES, mode='slide', refiner=refiner)
    cfg['data_preprocessor']['size'] = (64, 64)  # training batches are stacked, so padded to one size
    return cfg


def test_test_tool_evaluates_and_writes_outputs(tmp_path, data_root):
    config = write_config(tmp_path / 'tiny_test.py', data_root, tiny_model())
    metrics = load_tool('test.py').main([config, '--work-dir', str(tmp_path / 'work'), '--out',
                                         str(tmp_path / 'pred'), '--show-dir', str(tmp_path / 'vis')])
    assert 0.0 <= metrics['mIoU'] <= 100.0
    assert sorted(p.name for p in (tmp_path / 'pred').glob('*.png')) == ['a.png', 'b.png']
    assert len(list((tmp_path / 'vis').rglob('*.png'))) == 2


def test_train_resume_weights_only_and_test(tmp_path, data_root, refiner_type):
    model = tiny_model(dict(type=refiner_type))
    config = write_config(tmp_path / 'tiny_train.py', data_root, model, train=True)
    work = tmp_path / 'work'
    train = load_tool('train.py')
    train.main([config, '--work-dir', str(work)])
    ckpt = torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=True)  # no allowlist needed
    assert ckpt['meta']['iter'] == 4
    assert not any(k.startswith('refiner') and v.abs().sum() == 0 for k, v in ckpt['state_dict'].items())

    train.main([config, '--work-dir', str(work), '--resume', '--cfg-options', 'train_cfg.max_iters=6'])
    resumed = torch.load(work / 'iter_6.pth', map_location='cpu', weights_only=True)
    assert resumed['meta']['iter'] == 6
    # The loss history continues from the resumed checkpoint instead of starting again.
    assert len(resumed['message_hub']['log_scalars']['train/loss']['log_history']) == 6

    metrics = load_tool('test.py').main([config, str(work / 'iter_6.pth'), '--work-dir', str(tmp_path / 't')])
    assert 'mIoU' in metrics


def test_checkpoint_key_policy(tmp_path, data_root, refiner_type):
    test_tool = load_tool('test.py')
    model = MODELS.build(tiny_model(dict(type=refiner_type)))
    state = model.state_dict()
    refiner_only = {k: v for k, v in state.items() if k.startswith('refiner.')}
    torch.save(refiner_only, tmp_path / 'refiner_only.pth')
    with pytest.raises(KeyError, match=r'missing keys \[.backbone\..*allow_missing_frozen=True'):
        load_model_weights(model, str(tmp_path / 'refiner_only.pth'))  # every key by default
    omitted = load_model_weights(model, str(tmp_path / 'refiner_only.pth'), allow_missing_frozen=True)
    assert omitted and all(k.startswith('backbone.') for k in omitted)  # frozen CLIP keeps config weights

    renamed = dict(refiner_only)
    renamed['refiner.wrong.weight'] = renamed.pop('refiner.proj.weight')
    torch.save(renamed, tmp_path / 'renamed.pth')
    with pytest.raises(KeyError, match=r'missing keys \[.refiner\.proj\.weight.*unexpected keys \[.refiner\.wrong'):
        load_model_weights(model, str(tmp_path / 'renamed.pth'), allow_missing_frozen=True)

    config = write_config(tmp_path / 'tiny_keys.py', data_root, tiny_model())  # no refiner in this model
    with pytest.raises(KeyError, match=r'unexpected keys \[.refiner\.proj\.bias'):
        test_tool.main([config, str(tmp_path / 'refiner_only.pth'), '--work-dir', str(tmp_path / 'w'),
                        '--allow-missing-frozen'])
    with_refiner = write_config(tmp_path / 'tiny_refiner.py', data_root, tiny_model(dict(type=refiner_type)))
    metrics = test_tool.main([with_refiner, str(tmp_path / 'refiner_only.pth'), '--work-dir',
                              str(tmp_path / 'w2'), '--allow-missing-frozen'])
    report = json.loads((tmp_path / 'w2' / 'metrics.json').read_text())
    assert report['weights'].startswith('checkpoint ') and report['metrics']['mIoU'] == metrics['mIoU']


def test_test_tool_random_weights_says_so(tmp_path, data_root, capsys):
    config = write_config(tmp_path / 'tiny_random.py', data_root, tiny_model())
    metrics = load_tool('test.py').main([config, '--random-weights', '--work-dir', str(tmp_path / 'w')])
    report = json.loads((tmp_path / 'w' / 'metrics.json').read_text())
    assert report['random_weights'] is True and 'RANDOM' in report['weights'] and 'mIoU' in metrics
    assert 'RANDOM weights' in capsys.readouterr().err


def test_test_tool_command_line(tmp_path, data_root):
    config = write_config(tmp_path / 'tiny_cli.py', data_root, tiny_model())
    env = dict(os.environ, HF_HUB_OFFLINE='1',
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run([sys.executable, str(REPO / 'tools/test.py'), config, '--work-dir',
                           str(tmp_path / 'w'), '--cfg-options', 'model.test_cfg.mode=whole'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'mIoU' in proc.stdout + proc.stderr
