"""MaskCLIP, CLIP-DINOiser and the benchmark base configs: published settings, classes equal to the ovseg
vocabularies. Every config's inheritance and build: test_every_config.py."""
from pathlib import Path

import pytest
from mmengine.config import Config

from ovseg.registry import DATASETS
from ovseg.text import BACKGROUND_STUFF, load_vocabulary

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')
UINT16_BENCHMARKS = ('ade847', 'pc459')  # 16-bit labels, ignore 65535


def _dataset_classes(dataset_cfg):
    classes = dataset_cfg.get('metainfo', {}).get('classes')
    classes = classes or DATASETS.get(dataset_cfg['type']).METAINFO['classes']
    return tuple(c.strip() for c in classes)  # mmseg's ADE20K spells 'bed ' with a space


@pytest.mark.parametrize('name', BENCHMARKS)
def test_maskclip_config(name):
    path = REPO / 'configs/maskclip' / f'maskclip_vit-b16_{name}.py'
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports['imports'] == ['ovseg']
    assert {'type': 'WeightsOnlyCheckpointHook'} in cfg.custom_hooks
    # MaskCLIP's own class names and its 85 templates (prompt_engineering.py)
    assert cfg.model.vocabulary == f'maskclip/{name}'
    assert cfg.model.backbone.pretrained == 'openai' and cfg.model.text_classifier.templates == 'maskclip85'
    assert (cfg.model.test_cfg.crop_size, cfg.model.test_cfg.stride) == (448, 448 // 2)
    # One vocabulary class per dataset label id.
    assert len(_dataset_classes(cfg.test_dataloader.dataset)) == len(load_vocabulary(cfg.model.vocabulary))
    if name in ('voc21', 'coco_object81'):
        assert tuple(cfg.model.background.names) == BACKGROUND_STUFF
    else:
        assert 'background' not in cfg.model
    assert cfg.test_evaluator == dict(type='OVIoUMetric', iou_metrics=['mIoU'])  # convention 'mmseg'


@pytest.mark.parametrize('name', BENCHMARKS)
def test_clip_dinoiser_config(name):
    """CLIP-DINOiser's dataset CLASSES (one name each), its 80 templates, slide 448 / 224, and the
    background rule on VOC-21 and COCO-Object only (main_eval.py's apply_found)."""
    path = REPO / 'configs/clip_dinoiser' / f'clip_dinoiser_vit-b16_{name}.py'
    cfg = Config.fromfile(str(path))
    assert cfg.model.vocabulary == f'clip_dinoiser/{name}'
    assert cfg.model.text_classifier.templates == 'imagenet80'
    assert cfg.model.backbone.pretrained == 'laion2b_s34b_b88k'
    assert (cfg.model.test_cfg.mode, cfg.model.test_cfg.crop_size, cfg.model.test_cfg.stride) == ('slide', 448, 224)
    vocab = load_vocabulary(cfg.model.vocabulary)
    assert len(_dataset_classes(cfg.test_dataloader.dataset)) == len(vocab)
    assert all(len(cls) == 1 for cls in vocab.classes)
    rule = cfg.model.get('background')
    if name == 'pc60':
        assert rule is None
    else:
        assert rule == dict(thresh=0.99, objectness_thresh=0.5, optional=True)
        assert ('background' in vocab.names) == (name in ('voc21', 'coco_object81'))


@pytest.mark.parametrize('name', BENCHMARKS + UINT16_BENCHMARKS)
def test_dataset_base_config(name):
    """Every benchmark base config uses a registered dataset whose classes equal the vocabulary."""
    cfg = Config.fromfile(str(REPO / 'configs/_base_/datasets' / f'{name}.py'))
    dataset = cfg.test_dataloader.dataset
    assert DATASETS.get(dataset.type) is not None
    assert _dataset_classes(dataset) == tuple(load_vocabulary(name).names)
    assert cfg.val_evaluator == cfg.test_evaluator and cfg.test_evaluator.type == 'OVIoUMetric'
    loader = [t['type'] for t in dataset.pipeline if 'Annotations' in t['type']]
    if name in UINT16_BENCHMARKS:  # mmseg's LoadAnnotations would cast the 16-bit labels to uint8
        assert loader == ['LoadUint16Annotations'] and cfg.test_evaluator.ignore_index == 65535
    else:
        assert loader == ['LoadAnnotations'] and cfg.test_evaluator.get('ignore_index', 255) == 255
    if name == 'voc20':  # the dataset reduces the zero label itself; a label_map on top would shift twice
        assert 'metainfo' not in dataset and DATASETS.get(dataset.type).__name__ == 'PascalVOC20Dataset'


@pytest.mark.parametrize('method', ['maskclip', 'clip_dinoiser'])
@pytest.mark.parametrize('name', UINT16_BENCHMARKS)
def test_large_vocabulary_ovsegmentor_config(method, name):
    """MaskCLIP / CLIP-DINOiser on ADE-847 and PC-459: the dataset base's class chunks on top of the model
    base's slide 448 / 224, and ovseg's vocabulary with one class per label id."""
    path = REPO / f'configs/{method}' / f'{method}_vit-b16_{name}.py'
    cfg = Config.fromfile(str(path))
    # inheritance (one layer over configs/_base_/) is checked for every config in test_every_config.py
    assert cfg.model.type == 'OVSegmentor' and cfg.model.vocabulary == name
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=448, stride=224, window_batch=8, class_chunk=64,
                                      keep_seg_logits=False)
    assert len(_dataset_classes(cfg.test_dataloader.dataset)) == len(load_vocabulary(cfg.model.vocabulary))
