"""OVIoUMetric: the two mean conventions, seen/unseen splits, mmseg parity, errors, JSON."""
import json
import logging

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from mmseg.evaluation import IoUMetric
from ovseg.evaluation import OVIoUMetric

CLASSES = ('cat', 'dog', 'car')


def _sample(pred, gt, name='a'):
    return dict(pred_sem_seg=dict(data=torch.as_tensor(pred)[None]),
                gt_sem_seg=dict(data=torch.as_tensor(gt)[None]), img_path=f'{name}.jpg',
                seg_map_path=f'{name}.png')


def _evaluate(samples, classes=CLASSES, **kwargs):
    metric = OVIoUMetric(**kwargs)
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(len(samples))


# 'car' (2) is absent from the ground truth but predicted on one pixel; 255 is ignored.
GT = [[0, 0, 1, 1], [0, 0, 1, 255]]
PRED = [[0, 0, 1, 2], [0, 1, 1, 2]]
# cat: gt 4, pred 3, tp 3 -> IoU 3/4; dog: gt 3, pred 3, tp 2 -> 2/4; car: gt 0, pred 1 -> 0/1 (the
# ignored pixel predicted 'car' counts nowhere).


def test_conventions_differ_exactly_on_a_predicted_class_absent_from_ground_truth():
    mmseg = _evaluate([_sample(PRED, GT)], convention='mmseg')
    detectron2 = _evaluate([_sample(PRED, GT)], convention='detectron2')
    assert mmseg['mIoU'] == round((3 / 4 + 2 / 4 + 0) / 3 * 100, 2) == 41.67  # car scored 0
    assert detectron2['mIoU'] == round((3 / 4 + 2 / 4) / 2 * 100, 2) == 62.5  # car skipped
    assert mmseg['aAcc'] == detectron2['aAcc'] == round(5 / 7 * 100, 2)
    assert mmseg['mAcc'] == detectron2['mAcc'] == round((3 / 4 + 2 / 3) / 2 * 100, 2)


def test_conventions_agree_when_the_absent_class_is_never_predicted():
    pred = [[0, 0, 1, 0], [0, 1, 1, 2]]  # 'car' only on the ignored pixel
    results = [
        _evaluate([_sample(pred, GT)], convention=c)['mIoU'] for c in ('mmseg', 'detectron2')
    ]
    assert results[0] == results[1]


def test_mmseg_convention_matches_mmseg_iou_metric():
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(5):
        gt = torch.randint(0, 6, (17, 23), generator=gen)
        gt[gt == 5] = 255  # class 5 absent from the gt, but predicted
        samples.append(_sample(torch.randint(0, 6, (17, 23), generator=gen), gt, str(i)))
    classes = tuple('abcdef')
    ours = _evaluate(samples, classes, iou_metrics=['mIoU', 'mDice', 'mFscore'])
    reference = IoUMetric(iou_metrics=['mIoU', 'mDice', 'mFscore'])
    reference.dataset_meta = dict(classes=classes)
    reference.process({}, samples)
    expected = reference.evaluate(len(samples))
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert ours[key] == pytest.approx(float(value), abs=0.011), key


def test_seen_unseen_and_harmonic_mean():
    classes = ('cat', 'dog', 'car', 'bus')
    gt = [[0, 1, 2, 3]]
    pred = [[0, 1, 2, 2]]  # cat 1, dog 1, car 1/2, bus 0
    result = _evaluate([_sample(pred, gt)], classes, seen_classes=['cat', 'dog'])
    seen, unseen = 1.0, 0.25
    assert result['mIoU_seen'] == 100.0 and result['mIoU_unseen'] == 25.0
    assert result['hIoU'] == round(2 * seen * unseen / (seen + unseen) * 100, 2) == 40.0
    by_index = _evaluate([_sample(pred, gt)], classes, unseen_classes=[2, 3])
    assert by_index['hIoU'] == result['hIoU']


def test_bad_class_split_is_an_error():
    with pytest.raises(ValueError, match="'bird' is not one of"):
        _evaluate([_sample(PRED, GT)], seen_classes=['bird'])
    with pytest.raises(ValueError, match='both seen and unseen'):
        _evaluate([_sample(PRED, GT)], seen_classes=['cat'], unseen_classes=['cat', 'dog'])
    with pytest.raises(ValueError, match='convention'):
        OVIoUMetric(convention='coco')


def test_label_outside_the_classes_names_the_file():
    with pytest.raises(ValueError, match=r'broken\.png: label values \[7\]'):
        _evaluate([_sample(PRED, [[0, 0, 1, 7], [0, 0, 1, 255]], 'broken')])


def test_16_bit_labels_with_ignore_65535():
    classes = tuple(f'c{i}' for i in range(459))
    gt = [[400, 400, 65535], [458, 0, 400]]
    pred = [[400, 400, 400], [400, 0, 400]]
    metric = OVIoUMetric(ignore_index=65535, convention='detectron2')
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, [_sample(pred, gt)])
    totals = metric.results[0]
    assert totals.dtype == np.int64 and totals[:, 400].tolist() == [3, 4, 4, 3]
    assert metric.evaluate(1)['mIoU'] == round((3 / 4 + 0 + 1) / 3 * 100, 2)


def test_per_class_json_goes_to_output_dir(tmp_path):
    _evaluate([_sample(PRED, GT)], convention='detectron2', seen_classes=['cat'],
              output_dir=str(tmp_path))
    report = json.loads((tmp_path / 'per_class_iou.json').read_text())
    assert report['convention'] == 'detectron2' and report['num_images'] == 1
    assert report['metrics']['mIoU'] == 62.5
    car = report['classes'][2]
    assert car == dict(index=2, name='car', split='unseen', IoU=None, Acc=None, gt_pixels=0,
                       pred_pixels=1, intersection_pixels=0)


def test_per_class_json_goes_to_the_runner_log_dir(tmp_path):
    logger = MMLogger.get_instance('ovseg_test_json_dir', log_file=str(tmp_path / 'run.log'))
    try:
        _evaluate([_sample(PRED, GT)])
    finally:
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(handler)
            handler.close()
    report = json.loads((tmp_path / 'per_class_iou.json').read_text())
    assert report['classes'][2]['IoU'] == 0.0  # mmseg convention scores the absent class
    assert 'per class results' in (tmp_path / 'run.log').read_text()
