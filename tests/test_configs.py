"""The shipped configs load, follow the one-method-layer rule and agree with the ovseg vocabularies."""
import ast
from pathlib import Path

import pytest
from mmengine.config import Config

from ovseg.registry import DATASETS
from ovseg.text import BACKGROUND_STUFF, load_vocabulary

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')


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
