"""PC-459: converter on synthetic Pascal Context .mat files, 16-bit loading, errors, metric."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from dataset_layouts import build_pipeline, load_converter

from ovseg.datasets import PascalContext459Dataset
from ovseg.evaluation import OVIoUMetric

PIPELINE = (dict(type='LoadImageFromFile'), dict(type='LoadUint16Annotations'),
            dict(type='PackSegInputs'))


@pytest.fixture
def pc_root(pc_raw):
    root, expected = pc_raw
    load_converter('pascal_context_459').main([str(root)])
    return root, expected


def _dataset(root, split='val'):
    return PascalContext459Dataset(
        data_root=str(root), ann_file=f'ImageSets/Main/{split}.txt',
        data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassContext459'),
        pipeline=build_pipeline(*PIPELINE), test_mode=True)


def test_converter_shifts_ids_and_marks_unlabeled_65535(pc_root):
    root, expected = pc_root
    label = np.array(Image.open(root / 'SegmentationClassContext459' / '2008_000003.tif'))
    assert label.dtype == np.uint16 and np.array_equal(label, expected)
    train = np.array(Image.open(root / 'SegmentationClassContext459' / '2008_000002.tif'))
    assert np.array_equal(train, [[0, 1], [2, 65535]])


def test_label_400_survives_loading_and_counts_in_the_metric(pc_root):
    root, expected = pc_root
    dataset = _dataset(root)
    assert len(dataset) == 1 and len(dataset.metainfo['classes']) == 459
    sample = dataset[0]['data_samples']
    gt = sample.gt_sem_seg.data
    assert np.array_equal(gt[0].numpy(), expected.astype(np.int64))
    pred = torch.full_like(gt, 400)  # right on the three 400 pixels, wrong on 458 and 0
    metric = OVIoUMetric(ignore_index=65535, convention='detectron2')
    metric.dataset_meta = dataset.metainfo
    metric.process({}, [dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt),
                             seg_map_path=sample.seg_map_path)])
    totals = np.sum(metric.results, axis=0)
    assert totals[3, 400] == 3 and totals[0, 400] == 3 and totals[2, 400] == 5  # gt, tp, predicted
    result = metric.evaluate(1)
    assert result['mIoU'] == round((3 / 5 + 0 + 0) / 3 * 100, 2)  # classes 400, 458, 0 have gt


def test_converter_rejects_a_label_above_459(pc_raw):
    root, _ = pc_raw
    savemat(root / 'trainval' / '2008_000003.mat', {'LabelMap': np.array([[460]], dtype=np.uint16)})
    with pytest.raises(ValueError, match=r'2008_000003\.mat.*\[460\]'):
        load_converter('pascal_context_459').convert(str(root), ['val'])


def test_converter_names_a_missing_mat_file(pc_raw):
    root, _ = pc_raw
    (root / 'trainval' / '2008_000003.mat').unlink()
    with pytest.raises(FileNotFoundError, match=r'2008_000003\.mat.*trainval\.tar\.gz'):
        load_converter('pascal_context_459').convert(str(root), ['val'])


def test_converter_checks_labels_txt(pc_raw):
    root, _ = pc_raw
    (root / 'labels.txt').write_text('1: aeroplane\n2: bicycle\n')
    with pytest.raises(ValueError, match='labels.txt'):
        load_converter('pascal_context_459').convert(str(root), ['val'])


def test_unconverted_layout_names_the_converter(pc_raw):
    root, _ = pc_raw
    with pytest.raises(FileNotFoundError, match='SegmentationClassContext459') as err:
        _dataset(root)
    assert 'tools/dataset_converters/pascal_context_459.py' in str(err.value)
