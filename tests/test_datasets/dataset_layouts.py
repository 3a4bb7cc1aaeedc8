"""Tiny synthetic raw layouts that mirror the real releases (file names, formats, encodings).

Helpers and fixtures for the dataset tests; conftest.py re-exports the fixtures.
"""
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from ovseg.registry import TRANSFORMS
from ovseg.text import load_vocabulary

REPO = Path(__file__).resolve().parents[2]


def load_converter(name):
    """Import ``tools/dataset_converters/<name>.py`` (tools/ is not a package)."""
    path = REPO / 'tools' / 'dataset_converters' / f'{name}.py'
    spec = importlib.util.spec_from_file_location(f'ovseg_test_converter_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_pipeline(*cfgs):
    """Built transforms, so datasets need no default registry scope."""
    return [TRANSFORMS.build(cfg) for cfg in cfgs]


def write_jpg(path, height, width, seed=0):
    """A random RGB JPEG of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def ade_seg_png(path, class_index, instance=None):
    """Write an ADE20K ``*_seg.png``: R = index // 256 * 10 (+ junk < 10), G = index % 256."""
    rgb = np.zeros((*class_index.shape, 3), dtype=np.uint8)
    rgb[..., 0] = class_index // 256 * 10 + 3  # the release adds values below 10 that // 10 removes
    rgb[..., 1] = class_index % 256
    rgb[..., 2] = 0 if instance is None else instance
    Image.fromarray(rgb).save(path)


@pytest.fixture
def ade_raw(tmp_path):
    """ADE20K_2021_17_01 with one validation image (3x4) and one training image (520x600).

    The validation label holds ADE-847 labels 300 (top-left), 0 (wall) and unlabeled / non-847
    pixels.
    """
    ade = load_converter('ade20k_847')
    root = tmp_path / 'ADE20K_2021_17_01'
    val_folder = 'ADE20K_2021_17_01/images/ADE/validation/home_or_hotel/bathroom'
    train_folder = 'ADE20K_2021_17_01/images/ADE/training/urban/street'
    index = {'filename': ['ADE_val_00000001.jpg', 'ADE_train_00000001.jpg'],
             'folder': [val_folder, train_folder], 'scene': ['bathroom', 'street'],
             'objectnames': ['-'] * 3688, 'objectPresence': np.zeros((3688, 2), dtype=np.uint8)}
    root.mkdir()
    with open(root / 'index_ade20k.pkl', 'wb') as f:
        pickle.dump(index, f)
    label_300, wall = ade.ADE847_ADE_INDEX[300], ade.ADE847_ADE_INDEX[0]
    val_index = np.array(
        [[label_300, label_300, wall, 0], [wall, wall, 5, 0], [label_300, wall, wall, wall]],
        dtype=np.int32)  # 5: an ADE class not in 847
    write_jpg(tmp_path / val_folder / 'ADE_val_00000001.jpg', 3, 4)
    ade_seg_png(tmp_path / val_folder / 'ADE_val_00000001_seg.png', val_index)
    write_jpg(tmp_path / train_folder / 'ADE_train_00000001.jpg', 520, 600, seed=1)
    ade_seg_png(tmp_path / train_folder / 'ADE_train_00000001_seg.png',
                np.full((520, 600), wall, dtype=np.int32))
    expected = np.array([[300, 300, 0, 65535], [0, 0, 65535, 65535], [300, 0, 0, 0]],
                        dtype=np.uint16)
    return root, expected


@pytest.fixture
def pc_raw(tmp_path):
    """VOCdevkit/VOC2010 with Pascal Context ``trainval/*.mat`` and ``labels.txt`` for 2 images."""
    root = tmp_path / 'VOCdevkit' / 'VOC2010'
    (root / 'trainval').mkdir(parents=True)
    (root / 'ImageSets' / 'Main').mkdir(parents=True)
    (root / 'ImageSets' / 'Main' / 'train.txt').write_text('2008_000002\n')
    (root / 'ImageSets' / 'Main' / 'val.txt').write_text('2008_000003\n')
    names = load_vocabulary('pc459').names
    (root / 'labels.txt').write_text(''.join(f'{i + 1}: {n}\n' for i, n in enumerate(names)))
    maps = {'2008_000002': np.array([[1, 2], [3, 0]], dtype=np.uint16),
            '2008_000003': np.array([[401, 401, 0], [459, 1, 401]], dtype=np.uint16)}
    for name, label in maps.items():
        write_jpg(root / 'JPEGImages' / f'{name}.jpg', *label.shape)
        savemat(root / 'trainval' / f'{name}.mat', {'LabelMap': label})
    expected_val = np.array([[400, 400, 65535], [458, 0, 400]], dtype=np.uint16)
    return root, expected_val


@pytest.fixture
def coco_stuff_raw(tmp_path):
    """coco_stuff164k with one val2017 image and its stuffthingmap (plus an mmseg TrainIds file)."""
    root = tmp_path / 'coco_stuff164k'
    name = '000000000139'
    write_jpg(root / 'images' / 'val2017' / f'{name}.jpg', 2, 4)
    ann = root / 'annotations' / 'val2017'
    ann.mkdir(parents=True)
    # person (id 1), stop sign (13), toothbrush (90), stuff 'banner' (92) and unlabeled 255
    stuffthing = np.array([[0, 12, 89, 91], [255, 0, 181, 12]], dtype=np.uint8)
    Image.fromarray(stuffthing).save(ann / f'{name}.png')
    Image.fromarray(np.zeros((2, 4), np.uint8)).save(ann / f'{name}_labelTrainIds.png')
    expected = np.array([[1, 12, 80, 0], [0, 1, 0, 12]], dtype=np.uint8)
    return root, expected
