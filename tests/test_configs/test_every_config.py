"""Every shipped leaf config: one method layer over ``configs/_base_/``; its model builds with random weights.

Inheritance rule (as in mmseg): a leaf config inherits only files under ``configs/_base_/`` and those inherit
only other ``_base_`` files, so no leaf builds on another leaf.

Build: ``ovseg.apis.model_loading.build_model(cfg, random_weights=True)`` (the path of ``tools/test.py
--random-weights``: every pretrained tag and checkpoint path is removed) at the published sizes (ViT-L,
ConvNeXt-L, SAM ViT-H, SAM 3), on the ``meta`` device so that no memory is allocated and no weight
initialisation runs: the whole module tree, its constructor arguments and registry names are checked in
about 0.1 s per config. The network is closed during the build (nothing may be downloaded). The data side:
the dataloaders' datasets and transforms and the evaluators' metrics name registered types.
"""
import ast
import contextlib
import socket
from pathlib import Path
from unittest import mock

import pytest
import torch
from mmengine.config import Config

from ovseg.apis.model_loading import build_model
from ovseg.registry import DATASETS, METRICS, TRANSFORMS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / 'configs'
BASE = CONFIGS / '_base_'
# modules of requirements/optional.txt: a config that needs one skips (with the reason) where it is missing
OPTIONAL_MODULES = ('transformers',)
LEAVES = sorted(p for p in CONFIGS.rglob('*.py') if BASE not in p.parents)
# Parts that refuse to build without user-supplied weights even with every path removed: the training
# teachers, whose ``allow_random`` option (tests only) keeps random weights instead. FOUND's
# ``decoder_checkpoint`` is not one of the keys ``strip_weight_sources`` removes ('pretrained',
# 'checkpoint'), so it is removed here.
BUILD_OPTIONS = {
    'clip_dinoiser/clip_dinoiser_train_imagenet.py': {
        'model.refiner.teacher.allow_random': True, 'model.refiner.saliency_teacher.allow_random': True,
        'model.refiner.saliency_teacher.decoder_checkpoint': None},
}


def _bases(path):
    """The resolved ``_base_`` files of a config file (read from its source, as mmengine does)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == '_base_':
            bases = ast.literal_eval(node.value)
            bases = [bases] if isinstance(bases, str) else bases
            return [(path.parent / base).resolve() for base in bases]
    return []


def _types(node):
    """Every string ``type`` inside a config node (nested dicts and lists, e.g. TestTimeAug)."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield node['type']
        for value in node.values():
            yield from _types(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _types(value)


@contextlib.contextmanager
def _meta_build():
    """Build on the meta device, with ``Module.to(device)`` kept on it (open_clip moves its model to
    the CPU, which a meta tensor cannot do) and every socket connection refused."""
    module_to = torch.nn.Module.to

    def to_on_meta(self, *args, **kwargs):
        dtype = torch._C._nn._parse_to(*args, **kwargs)[1]
        return module_to(self, dtype=dtype) if dtype is not None else self

    def no_network(*args, **kwargs):
        raise AssertionError(f'a config build tried to connect to {args[1:]}: nothing may be downloaded')

    with mock.patch.object(torch.nn.Module, 'to', to_on_meta), \
            mock.patch.object(socket.socket, 'connect', no_network), torch.device('meta'):
        yield


def test_every_method_folder_has_configs():
    assert len(LEAVES) > 100 and (CONFIGS / 'maskclip' / 'maskclip_vit-b16_ade150.py') in LEAVES


@pytest.mark.parametrize('path', LEAVES, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_has_one_method_layer_and_builds(path):
    """Inheritance rule, random-weight build of the model at full size, registered data and metric types."""
    rel = str(path.relative_to(CONFIGS))
    pending = _bases(path)
    assert pending, f'{rel} inherits nothing from configs/_base_/'
    seen = set()
    while pending:  # the leaf's bases and, transitively, theirs: all under configs/_base_/
        base = pending.pop()
        assert BASE in base.parents, f'{rel} inherits {base}, which is not under configs/_base_/'
        assert base.is_file(), f'{rel}: missing base {base}'
        if base not in seen:
            seen.add(base)
            pending.extend(_bases(base))

    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(BUILD_OPTIONS.get(rel, {}))
    try:
        with _meta_build():
            model = build_model(cfg, random_weights=True)
    except ImportError as error:  # an optional backend not installed (SAM 2 / SAM 3 need transformers)
        if getattr(error, 'name', None) in OPTIONAL_MODULES or any(m in str(error) for m in OPTIONAL_MODULES):
            pytest.skip(f'{rel}: optional dependency missing: {error}')
        raise
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)

    loaders = [cfg.get(k) for k in ('train_dataloader', 'val_dataloader', 'test_dataloader') if cfg.get(k)]
    assert cfg.get('test_dataloader') or cfg.get('train_dataloader'), f'{rel} has no dataloader'
    assert bool(cfg.get('test_dataloader')) == bool(cfg.get('test_evaluator'))
    for loader in loaders:
        dataset = loader['dataset']
        assert DATASETS.get(dataset['type']) is not None, dataset['type']
        for name in _types(dataset.get('pipeline', [])):
            assert TRANSFORMS.get(name) is not None, f'{rel}: transform {name} is not registered'
    for key in ('val_evaluator', 'test_evaluator'):
        for name in _types(cfg.get(key)):
            assert METRICS.get(name) is not None, f'{rel}: metric {name} is not registered'
