"""The anomaly configs run through tools/test.py on a generated MVTec-layout dataset with a tiny CLIP.

Three texture categories (scikit-image brick / grass / gravel) with pasted elliptical defects; the
config's CLIP is replaced by a tiny random ViT (64 px, 4 x 4 patches), nothing is downloaded. Every
metric must be reported per category and as the category mean, and the per-category JSON written.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg.datasets.anomaly import make_mvtec_like
from ovseg.evaluation.anomaly import METRIC_NAMES
from ovseg.testing import load_tool, tiny_clip_arch

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = ('brick', 'grass', 'gravel')


def _test_tool():
    return load_tool('test.py')


@pytest.fixture(scope='module')
def mvtec_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('mvtec_like')
    make_mvtec_like(str(root), CATEGORIES, num_good=3, num_defect=3, size=96, seed=0)
    return root


def _tiny_config(tmp_path, leaf, root, head=None, model=''):
    """A test-only config over a shipped leaf: tiny CLIP, 64 px, the generated data, no workers."""
    arch = tiny_clip_arch('vit')
    head = f', head=dict({head})' if head else ''
    head += f', {model}' if model else ''
    lines = [f"_base_ = [{str(REPO / 'configs/anomaly' / leaf)!r}]",
             'test_pipeline = [',
             "    dict(type='LoadImageFromFile'),",
             "    dict(type='Resize', scale=(64, 64), keep_ratio=False, interpolation='bicubic'),",
             "    dict(type='LoadAnomalyMask'),",
             "    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}})]",
             f"model = dict(backbone=dict(_delete_=True, type='OpenCLIPBackbone', arch={arch!r}){head})",
             'test_dataloader = dict(num_workers=0, persistent_workers=False,',
             f'                       dataset=dict(data_root={str(root)!r}, pipeline=test_pipeline))',
             'test_evaluator = dict(eval_size=(64, 64))',
             'default_hooks = dict(logger=dict(interval=1))',
             # a fresh visualizer instance: mmengine reuses one per name in a process (its save_dir too)
             f'visualizer = dict(name={"anomaly_" + tmp_path.name!r})']
    path = tmp_path / f'tiny_{leaf}'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def _check_report(metrics, work_dir):
    for name in METRIC_NAMES:
        assert 0.0 <= metrics[name] <= 100.0, name
        per_category = [metrics[f'{c}/{name}'] for c in CATEGORIES]
        assert np.isfinite(per_category).all(), name
        assert metrics[name] == pytest.approx(np.mean(per_category))
    report = json.loads(next(Path(work_dir).rglob('anomaly_metrics.json')).read_text())
    assert sorted(report['categories']) == list(CATEGORIES)
    assert all(row['num_images'] == 6 and row['num_anomalous'] == 3 for row in report['categories'].values())
    assert report['mean']['pixel_AUPRO_official'] == pytest.approx(metrics['pixel_AUPRO_official'])


def test_winclip_config_on_generated_mvtec(tmp_path, mvtec_root):
    config = _tiny_config(tmp_path, 'winclip_vit-b16-plus-240_mvtec.py', mvtec_root)
    work_dir = tmp_path / 'work'
    metrics = _test_tool().main([config, '--work-dir', str(work_dir), '--show-dir', str(tmp_path / 'vis')])
    _check_report(metrics, work_dir)
    overlays = sorted(p.name for p in (tmp_path / 'vis').rglob('*.png'))
    assert len(overlays) == 18 and overlays[0] == 'brick_good_000_0.png'  # unique per category / defect
    first = np.asarray(Image.open(next((tmp_path / 'vis').rglob('brick_pasted_000_0.png'))))
    assert first.shape == (96, 192, 3)  # [image + ground-truth outline | heat map] at the original size


def test_musc_config_on_generated_mvtec(tmp_path, mvtec_root):
    config = _tiny_config(tmp_path, 'musc_vit-l14-336_mvtec.py', mvtec_root,
                          head='layers=(0, 1), extract_batch=4')
    work_dir = tmp_path / 'work'
    metrics = _test_tool().main([config, '--work-dir', str(work_dir)])
    _check_report(metrics, work_dir)


@pytest.fixture(scope='module')
def mvtec_train_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('mvtec_like_train')
    make_mvtec_like(str(root), CATEGORIES, num_good=3, num_defect=3, size=96, seed=0, num_train=3)
    return root


@pytest.mark.parametrize('leaf', ['winclip_vit-b16-plus-240_2shot_mvtec.py'])
def test_fewshot_config_on_generated_mvtec(tmp_path, mvtec_train_root, leaf):
    """k-shot configs: references drawn from train/good per category, loaded by the test pipeline."""
    config = _tiny_config(tmp_path, leaf, mvtec_train_root, model='reference_pipeline=test_pipeline')
    work_dir = tmp_path / 'work'
    metrics = _test_tool().main([config, '--work-dir', str(work_dir)])
    _check_report(metrics, work_dir)
