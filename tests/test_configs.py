"""The shipped configs load, follow the one-method-layer rule and agree with the ovseg vocabularies."""
import ast
from pathlib import Path

import pytest
from mmengine.config import Config

from ovseg.registry import DATASETS
from ovseg.text import BACKGROUND_STUFF, load_vocabulary

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')
UINT16_BENCHMARKS = ('ade847', 'pc459')  # 16-bit labels, ignore 65535


def _bases(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == '_base_':
            return ast.literal_eval(node.value)
    return []


def _dataset_classes(dataset_cfg):
    classes = dataset_cfg.get('metainfo', {}).get('classes')
    classes = classes or DATASETS.get(dataset_cfg['type']).METAINFO['classes']
    return tuple(c.strip() for c in classes)  # mmseg's ADE20K spells 'bed ' with a space


@pytest.mark.parametrize('name', BENCHMARKS)
def test_maskclip_config(name):
    path = REPO / 'configs/maskclip' / f'maskclip_vit-b16_{name}.py'
    cfg = Config.fromfile(str(path))
    assert all(base.startswith('../_base_/') for base in _bases(path))  # never on another leaf
    assert cfg.custom_imports['imports'] == ['ovseg']
    assert {'type': 'WeightsOnlyCheckpointHook'} in cfg.custom_hooks
    assert cfg.model.vocabulary == name
    assert cfg.model.backbone.pretrained == 'openai' and cfg.model.text_classifier.templates == 'imagenet80'
    assert (cfg.model.test_cfg.crop_size, cfg.model.test_cfg.stride) == (448, 448 // 2)
    # Dataset label ids and vocabulary classes are the same list in the same order.
    vocab = load_vocabulary(name)
    assert _dataset_classes(cfg.test_dataloader.dataset) == tuple(vocab.names)
    if name in ('voc21', 'coco_object81'):
        assert tuple(cfg.model.background.names) == BACKGROUND_STUFF
    else:
        assert 'background' not in cfg.model
    assert cfg.test_evaluator == dict(type='OVIoUMetric', iou_metrics=['mIoU'])  # convention 'mmseg'


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
