"""ADE-847: converter on a synthetic ADE20K_2021_17_01 layout, 16-bit loading, errors, metric."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dataset_layouts import build_pipeline, load_converter

from ovseg.datasets import ADE20K847Dataset
from ovseg.evaluation import OVIoUMetric

VAL_PREFIX = dict(img_path='images_detectron2/validation',
                  seg_map_path='annotations_detectron2/validation')
PIPELINE = (dict(type='LoadImageFromFile'), dict(type='LoadUint16Annotations'),
            dict(type='PackSegInputs'))


@pytest.fixture
def ade_root(ade_raw):
    root, expected = ade_raw
    assert load_converter('ade20k_847').main([str(root)]) is None
    return root, expected


def _dataset(root, **kwargs):
    return ADE20K847Dataset(data_root=str(root), data_prefix=dict(VAL_PREFIX),
                            pipeline=build_pipeline(*PIPELINE), test_mode=True, **kwargs)


def test_converter_writes_uint16_labels_in_the_detectron2_layout(ade_root):
    root, expected = ade_root
    label = np.array(Image.open(root / 'annotations_detectron2/validation/ADE_val_00000001.tif'))
    assert label.dtype == np.uint16 and np.array_equal(label, expected)
    assert (root / 'images_detectron2/validation/ADE_val_00000001.jpg').is_file()


def test_converter_resizes_short_side_above_512_to_512(ade_root):
    root, _ = ade_root
    img = Image.open(root / 'images_detectron2/training/ADE_train_00000001.jpg')
    label = np.array(Image.open(root / 'annotations_detectron2/training/ADE_train_00000001.tif'))
    assert img.size == (591, 512) and label.shape == (512, 591)  # 600x520 -> round(600 / 520 * 512)
    assert np.all(label == 0)  # wall everywhere


def test_converter_names_the_missing_index(tmp_path):
    with pytest.raises(FileNotFoundError, match='index_ade20k.pkl'):
        load_converter('ade20k_847').convert(str(tmp_path))


def test_label_300_and_ignore_survive_loading(ade_root):
    root, expected = ade_root
    dataset = _dataset(root)
    assert len(dataset) == 1 and len(dataset.metainfo['classes']) == 847
    gt = dataset[0]['data_samples'].gt_sem_seg.data[0]
    assert gt.dtype == torch.int64 and np.array_equal(gt.numpy(), expected.astype(np.int64))


def test_mmseg_loader_would_corrupt_the_same_file(ade_root):
    root, _ = ade_root
    tif = root / 'annotations_detectron2/validation/ADE_val_00000001.tif'
    results = dict(seg_map_path=str(tif), reduce_zero_label=False, seg_fields=[])
    gt = build_pipeline(dict(type='LoadAnnotations'))[0](results)['gt_seg_map']
    assert gt[0, 0] == 300 % 256 and gt[0, 3] == 255  # why LoadUint16Annotations exists


def test_label_300_counts_in_the_metric(ade_root, tmp_path):
    root, expected = ade_root
    dataset = _dataset(root)
    sample = dataset[0]['data_samples']
    gt = sample.gt_sem_seg.data
    pred = torch.where(gt == 65535, torch.ones_like(gt), gt)
    metric = OVIoUMetric(ignore_index=65535, convention='detectron2',
                         output_dir=str(tmp_path / 'out'))
    metric.dataset_meta = dataset.metainfo
    metric.process({}, [dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt),
                             img_path=sample.img_path, seg_map_path=sample.seg_map_path)])
    assert metric.evaluate(1)['mIoU'] == 100.0
    rows = json.loads((tmp_path / 'out' / 'per_class_iou.json').read_text())['classes']
    assert rows[300]['gt_pixels'] == 3 and rows[300]['IoU'] == 100.0
    assert rows[0]['gt_pixels'] == int((expected == 0).sum())
    assert rows[1]['IoU'] is None  # no ground truth, never predicted where labelled
    pred_png = np.array(Image.open(tmp_path / 'out' / 'ADE_val_00000001.png'))
    assert pred_png.dtype == np.uint16 and pred_png[0, 0] == 300


def test_label_outside_847_classes_is_reported_with_its_file(ade_root):
    root, expected = ade_root
    tif = root / 'annotations_detectron2/validation/ADE_val_00000001.tif'
    bad = expected.copy()
    bad[1, 1] = 900
    Image.fromarray(bad).save(tif)
    with pytest.raises(ValueError, match=r'ADE_val_00000001\.tif.*\[900\]'):
        _dataset(root)[0]


def test_class_subset_maps_dropped_classes_to_65535(ade_root):
    root, _ = ade_root
    classes = ADE20K847Dataset.METAINFO['classes']
    dataset = _dataset(root, metainfo=dict(classes=(classes[300], classes[0])))
    gt = dataset[0]['data_samples'].gt_sem_seg.data[0].numpy()
    assert np.array_equal(gt, [[0, 0, 1, 65535], [1, 1, 65535, 65535], [0, 1, 1, 1]])
    assert dataset.label_map[5] == 65535 and dataset.label_map[300] == 0


@pytest.mark.parametrize(
    'remove, message',
    [('', 'data_root'), ('images_detectron2', 'image folder'),
     ('annotations_detectron2', 'annotation folder'),
     ('annotations_detectron2/validation/ADE_val_00000001.tif', 'annotation files are missing')])
def test_missing_parts_name_the_path_and_the_converter(ade_root, remove, message):
    root, _ = ade_root
    target = root / remove if remove else root
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=message) as err:
        _dataset(root)
    assert 'tools/dataset_converters/ade20k_847.py' in str(err.value)


def test_no_matching_image_is_an_error(ade_root):
    root, _ = ade_root
    for jpg in (root / 'images_detectron2/validation').glob('*.jpg'):
        jpg.unlink()
    with pytest.raises(FileNotFoundError, match='no image matched'):
        _dataset(root)
