"""Tiny synthetic raw layouts that mirror the real releases (file names, formats, encodings).

Helpers and fixtures for the dataset tests; conftest.py re-exports the fixtures.
"""
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
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


def load_mmseg_converter(name):
    """Import mmseg's ``tools/dataset_converters/<name>.py`` as the mmsegmentation wheel ships it.

    Raises:
        FileNotFoundError: this mmseg install has no ``mmseg/.mim/tools`` (e.g. a source checkout).
        ImportError: the converter's own dependency is missing (cityscapesscripts, detail).
    """
    import mmseg  # after ovseg.registry (imported above), which prepares mmcv.ops for mmseg
    path = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'dataset_converters' / f'{name}.py'
    if not path.is_file():
        raise FileNotFoundError(f"mmseg's converter {name}.py is not installed at {path}")
    spec = importlib.util.spec_from_file_location(f'mmseg_converter_{name}', path)
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


def make_ade847_raw(tmp_path):
    """ADE20K_2021_17_01 with one validation image (3x4) and one training image (520x600).

    The validation label holds ADE-847 labels 300 (top-left), 0 (wall) and unlabeled / non-847
    pixels.

    Returns:
        tuple[Path, np.ndarray]: the release folder and the uint16 validation label the converter
        must write.
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


def make_pc459_raw(tmp_path):
    """VOCdevkit/VOC2010 with Pascal Context ``trainval/*.mat`` and ``labels.txt`` for 2 images.

    Returns:
        tuple[Path, np.ndarray]: the VOC2010 folder and the uint16 val label (2008_000003) the
        converter must write: PC-459 labels 400, 458, 0 and unlabeled 65535.
    """
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


def make_coco_stuff_raw(tmp_path):
    """coco_stuff164k with one val2017 image and its stuffthingmap (plus an mmseg TrainIds file).

    Returns:
        tuple[Path, np.ndarray]: the root and the COCO-Object label ovseg's converter must write.
    """
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


def make_ade150_raw(tmp_path):
    """ADEChallengeData2016 (extracted into ``ade/``) with one validation and one training image.

    Labels are 8-bit PNGs, 0 = 'other', 1..150 the classes; no conversion.

    Returns:
        tuple[Path, np.ndarray]: the ADEChallengeData2016 folder and the validation label as mmseg's
        ``ADE20KDataset`` loads it (``reduce_zero_label``: 0 -> 255, k -> k - 1).
    """
    root = tmp_path / 'ade' / 'ADEChallengeData2016'
    label = np.array([[0, 1, 1, 150], [1, 4, 150, 0], [4, 4, 0, 1]], dtype=np.uint8)
    for split, name, seed in (('validation', 'ADE_val_00000001', 0),
                              ('training', 'ADE_train_00000001', 1)):
        write_jpg(root / 'images' / split / f'{name}.jpg', *label.shape, seed=seed)
        (root / 'annotations' / split).mkdir(parents=True)
        Image.fromarray(label).save(root / 'annotations' / split / f'{name}.png')
    return root, np.where(label == 0, 255, label.astype(np.int64) - 1)


def make_pascal_context_converted(tmp_path):
    """VOCdevkit/VOC2010 as mmseg's ``pascal_context.py`` leaves it, for 2 images (train, val).

    That converter reads ``trainval_merged.json`` through the Detail API (not installable
    offline), so its output is written directly in its encoding:
    ``SegmentationClassContext/<name>.png`` (8-bit grayscale, 0 = background, 1..59 the classes in
    Pascal Context id order: ``np.digitize`` over the 60 sorted ids) and
    ``ImageSets/SegmentationContext/{train,val}.txt`` (sorted names).

    Returns:
        tuple[Path, np.ndarray]: the VOC2010 folder and the uint8 PC-60 label of the val image.
    """
    root = tmp_path / 'VOCdevkit' / 'VOC2010'
    val = np.array([[0, 1, 1, 59], [0, 15, 59, 59], [1, 1, 0, 0]], dtype=np.uint8)
    labels = {'2008_000002': np.array([[0, 5], [5, 0]], dtype=np.uint8), '2008_000003': val}
    (root / 'SegmentationClassContext').mkdir(parents=True)
    (root / 'ImageSets' / 'SegmentationContext').mkdir(parents=True)
    for name, label in labels.items():
        write_jpg(root / 'JPEGImages' / f'{name}.jpg', *label.shape)
        Image.fromarray(label).save(root / 'SegmentationClassContext' / f'{name}.png')
    for split, name in (('train', '2008_000002'), ('val', '2008_000003')):
        (root / 'ImageSets' / 'SegmentationContext' / f'{split}.txt').write_text(f'{name}\n')
    return root, labels['2008_000003']


CITYSCAPES_NAME = 'frankfurt_000000_000294'
# Cityscapes labels used below: name -> (id, trainId); trainId None = id -1 (never drawn).
CITYSCAPES_LABELS = {'unlabeled': (0, 255), 'ego vehicle': (1, 255), 'road': (7, 0),
                     'sky': (23, 10), 'person': (24, 11), 'car': (26, 13),
                     'license plate': (-1, None)}
# Polygons of the val image (16x32), in drawing order: (label, x0, y0, x1, y1, deleted).
CITYSCAPES_OBJECTS = (('sky', 0, 0, 31, 3, 0), ('road', 0, 8, 31, 15, 0), ('car', 4, 6, 11, 11, 0),
                      ('cargroup', 20, 5, 23, 7, 0), ('license plate', 6, 9, 8, 10, 0),
                      ('person', 24, 9, 27, 12, 1), ('ego vehicle', 0, 14, 31, 15, 0))


def make_cityscapes_raw(tmp_path):
    """data/cityscapes as downloaded: one val image with its ``_gtFine_polygons.json`` and labelIds.

    Returns:
        tuple[Path, np.ndarray]: the root and the train-id map mmseg's converter must write
        (rectangles fill inclusively, later objects on top, 'cargroup' -> car, deleted objects and
        id -1 labels skipped, the rest 255).
    """
    root = tmp_path / 'cityscapes'
    img_dir = root / 'leftImg8bit' / 'val' / 'frankfurt'
    gt_dir = root / 'gtFine' / 'val' / 'frankfurt'
    gt_dir.mkdir(parents=True)
    height, width = 16, 32
    write_jpg(img_dir / f'{CITYSCAPES_NAME}_leftImg8bit.png', height, width)  # PIL: PNG by suffix
    objects, ids, train_ids = [], np.zeros((height, width), np.uint8), np.full((height, width), 255)
    for label, x0, y0, x1, y1, deleted in CITYSCAPES_OBJECTS:
        polygon = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        objects.append(dict(label=label, polygon=polygon, **({'deleted': 1} if deleted else {})))
        label_id, train_id = CITYSCAPES_LABELS[label.replace('group', '')]
        if not deleted and train_id is not None:
            ids[y0:y1 + 1, x0:x1 + 1], train_ids[y0:y1 + 1, x0:x1 + 1] = label_id, train_id
    annotation = dict(imgHeight=height, imgWidth=width, objects=objects)
    (gt_dir / f'{CITYSCAPES_NAME}_gtFine_polygons.json').write_text(json.dumps(annotation))
    Image.fromarray(ids).save(gt_dir / f'{CITYSCAPES_NAME}_gtFine_labelIds.png')
    return root, train_ids.astype(np.uint8)


def convert_cityscapes(root):
    """mmseg's ``cityscapes.py`` on every ``*_polygons.json`` under ``root/gtFine``.

    With cityscapesscripts installed this runs mmseg's converter function (json2labelImg,
    'trainIds'); without it, the same PIL polygon fill json2labelImg does (background 'unlabeled',
    objects in file order, '...group' -> '...', deleted objects and id -1 labels skipped).

    Returns:
        bool: whether mmseg's converter itself ran.
    """
    polygons = sorted(Path(root, 'gtFine').rglob('*_gtFine_polygons.json'))
    try:
        convert = load_mmseg_converter('cityscapes').convert_json_to_label
    except (ImportError, FileNotFoundError):
        convert = None
    for path in polygons:
        if convert is not None:
            convert(str(path))
            continue
        annotation = json.loads(path.read_text())
        image = Image.new('L', (annotation['imgWidth'], annotation['imgHeight']), 255)
        draw = ImageDraw.Draw(image)
        for obj in annotation['objects']:
            label = obj['label']
            if label not in CITYSCAPES_LABELS and label.endswith('group'):
                label = label[:-len('group')]
            train_id = CITYSCAPES_LABELS[label][1]
            if not obj.get('deleted') and train_id is not None:
                draw.polygon([tuple(p) for p in obj['polygon']], fill=train_id)
        image.save(str(path).replace('_polygons.json', '_labelTrainIds.png'))
    return convert is not None


@pytest.fixture
def ade_raw(tmp_path):
    """``make_ade847_raw`` in the test's temporary folder."""
    return make_ade847_raw(tmp_path)


@pytest.fixture
def pc_raw(tmp_path):
    """``make_pc459_raw`` in the test's temporary folder."""
    return make_pc459_raw(tmp_path)


@pytest.fixture
def coco_stuff_raw(tmp_path):
    """``make_coco_stuff_raw`` in the test's temporary folder."""
    return make_coco_stuff_raw(tmp_path)
