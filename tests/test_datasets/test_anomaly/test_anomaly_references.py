"""Few-shot normal references: the draw rules and the datasets' ``reference_paths`` on generated data."""
import os

import pytest
import torch
from mmengine.registry import init_default_scope

from ovseg.datasets.anomaly import MVTecADDataset, VisADataset, draw_references, make_mvtec_like, make_visa_like

CATEGORIES = ('brick', 'grass')


@pytest.fixture(scope='module', autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')


def test_randint_draw_is_adaptclips_rule():
    """'randint' = torch.manual_seed(seed); torch.randint(0, n, (k,)) over the candidates (with replacement)."""
    candidates = [f'{i:03d}.png' for i in range(7)]
    for seed in (0, 10, 111):
        torch.manual_seed(seed)
        expected = tuple(candidates[i] for i in torch.randint(0, len(candidates), (4,)).tolist())
        assert draw_references(candidates, 4, seed, 'randint') == expected
    assert len(draw_references(candidates[:2], 5, 0, 'randint')) == 5  # with replacement


def test_shuffle_draw_is_seeded_nested_and_distinct():
    candidates = [f'{i:03d}.png' for i in range(20)]
    four = draw_references(candidates, 4, 3)
    assert len(set(four)) == 4 and set(four) <= set(candidates)
    assert draw_references(candidates, 2, 3) == four[:2]  # the 2-shot set is inside the 4-shot set
    assert draw_references(candidates, 4, 3) == four
    assert draw_references(candidates, 4, 4) != four
    assert draw_references(candidates, None) == tuple(candidates)  # the whole pool


@pytest.mark.parametrize('k_shot, draw, match', [(0, 'shuffle', 'k_shot must be'), (30, 'shuffle', 'only 20'),
                                                  (1, 'bogus', 'unknown reference draw')])
def test_draw_errors(k_shot, draw, match):
    with pytest.raises(ValueError, match=match):
        draw_references([f'{i}.png' for i in range(20)], k_shot, 0, draw)


def test_mvtec_references_from_train_good(tmp_path):
    make_mvtec_like(str(tmp_path), CATEGORIES, num_good=1, num_defect=1, size=32, num_train=5)
    ds = MVTecADDataset(str(tmp_path), references=dict(k_shot=2, seed=1), pipeline=[], serialize_data=False)
    for info in ds.data_list:
        refs = info['reference_paths']
        assert len(refs) == 2 and all(os.path.dirname(p) == str(tmp_path / info['category'] / 'train' / 'good')
                                      for p in refs)
    by_category = {info['category']: info['reference_paths'] for info in ds.data_list}
    folder = tmp_path / 'brick' / 'train' / 'good'
    assert by_category['brick'] == draw_references(sorted(str(folder / n) for n in os.listdir(folder)), 2, 1)
    assert 'reference_paths' not in MVTecADDataset(str(tmp_path), pipeline=[]).get_data_info(0)


def test_mvtec_references_need_train_images(tmp_path):
    make_mvtec_like(str(tmp_path), CATEGORIES, num_good=1, num_defect=1, size=32)
    with pytest.raises(FileNotFoundError, match='no normal training image'):
        MVTecADDataset(str(tmp_path), references=dict(k_shot=1), pipeline=[])
    with pytest.raises(ValueError, match='unknown keys'):
        make_mvtec_like(str(tmp_path), CATEGORIES, num_good=1, num_defect=1, size=32, num_train=1)
        MVTecADDataset(str(tmp_path), references=dict(shots=1), pipeline=[])


def test_visa_references_from_normal_train_rows(tmp_path):
    make_visa_like(str(tmp_path), CATEGORIES, num_good=1, num_defect=1, size=32)
    ds = VisADataset(str(tmp_path), references=dict(k_shot=None), pipeline=[])
    for info in ds.data_list:
        assert info['reference_paths'] == (str(tmp_path / info['category'] / 'Data' / 'Images' / 'Normal'
                                               / 'train000.png'),)
    with pytest.raises(ValueError, match='only 1 normal'):
        VisADataset(str(tmp_path), references=dict(k_shot=2, draw='shuffle'), pipeline=[])
