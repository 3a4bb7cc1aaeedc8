"""Tiny full configs (model + test pipeline) for the inference API and demo tests."""
import pprint

import pytest

from ovseg.testing import tiny_maskclip_cfg


def tiny_full_cfg(short_side=64, **model_kwargs):
    """A full config dict: tiny random MaskCLIP + a dataset-style test pipeline (short side)."""
    return dict(
        model=tiny_maskclip_cfg(**model_kwargs),
        test_pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(2048, short_side), keep_ratio=True),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ])


@pytest.fixture
def tiny_cfg():
    """Factory of tiny full config dicts: ``tiny_cfg(short_side=64, **model_kwargs)``."""
    return tiny_full_cfg


@pytest.fixture
def write_config(tmp_path):
    """Write a config dict as a Python config file in ``tmp_path``; returns its path."""
    def write(cfg, name='tiny_cfg.py'):
        path = tmp_path / name
        path.write_text(''.join(f'{key} = {pprint.pformat(value)}\n' for key, value in cfg.items()))
        return path
    return write


@pytest.fixture(scope='module')
def tiny_inferencer():
    """A tiny inferencer (cat, dog, grass) shared by a test module; keep its default vocabulary."""
    from ovseg.apis import OVSegInferencer
    return OVSegInferencer(tiny_full_cfg())
