"""COCO-Object: converter on a synthetic COCO-Stuff 164k layout, dataset loading and errors."""
import numpy as np
import pytest
from PIL import Image

from dataset_layouts import build_pipeline, load_converter

from ovseg.datasets import COCOObjectDataset

PIPELINE = (dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'))


def _dataset(root):
    prefix = dict(img_path='images/val2017', seg_map_path='annotations/val2017')
    return COCOObjectDataset(data_root=str(root), data_prefix=prefix,
                             pipeline=build_pipeline(*PIPELINE), test_mode=True)


def test_converter_maps_things_to_1_80_and_stuff_and_unlabeled_to_background(coco_stuff_raw):
    root, expected = coco_stuff_raw
    written = load_converter('coco_object').convert(str(root), ['val2017'])
    assert written == 1  # the mmseg *_labelTrainIds.png beside it is not read
    label = np.array(Image.open(root / 'annotations/val2017/000000000139_instanceTrainIds.png'))
    assert label.dtype == np.uint8 and np.array_equal(label, expected)


def test_lut_covers_80_things_in_coco_order():
    lut = load_converter('coco_object').build_lut()
    assert sorted(lut[lut > 0].tolist()) == list(range(1, 81))
    assert lut[0] == 1 and lut[89] == 80 and lut[255] == 0 and lut[11] == -1  # id 12 is unused


def test_converter_rejects_a_value_that_is_no_category(coco_stuff_raw):
    root, _ = coco_stuff_raw
    raw = np.array([[11, 200]], dtype=np.uint8)
    Image.fromarray(raw).save(root / 'annotations/val2017/000000000139.png')
    with pytest.raises(ValueError, match=r'000000000139\.png.*\[11, 200\]'):
        load_converter('coco_object').convert(str(root), ['val2017'])


def test_dataset_loads_81_classes(coco_stuff_raw):
    root, expected = coco_stuff_raw
    load_converter('coco_object').main([str(root), '--splits', 'val2017'])
    dataset = _dataset(root)
    classes = dataset.metainfo['classes']
    assert classes[:2] == ('background', 'person') and len(classes) == 81
    gt = dataset[0]['data_samples'].gt_sem_seg.data[0].numpy()
    assert np.array_equal(gt, expected)


def test_unconverted_layout_names_the_converter(coco_stuff_raw):
    root, _ = coco_stuff_raw
    with pytest.raises(FileNotFoundError, match='annotation files are missing') as err:
        _dataset(root)
    assert 'tools/dataset_converters/coco_object.py' in str(err.value)


def test_converter_names_a_missing_annotation_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='stuffthingmaps_trainval2017.zip'):
        load_converter('coco_object').convert(str(tmp_path), ['val2017'])
