"""AnomalyMetric bookkeeping: categories, the mean, undefined metrics, resizing and input errors."""
import json

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from ovseg.evaluation.anomaly import METRIC_NAMES, AnomalyMetric, auroc, aupro_official


def _sample(amap, mask, category, score=None):
    sample = SegDataSample(metainfo=dict(category=category, img_path=f'{category}.png'))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(mask[None].astype(np.int64)))
    sample.anomaly_map = PixelData(data=torch.from_numpy(amap[None].astype(np.float32)))
    if score is not None:
        sample.pred_score = torch.tensor(score)
    return sample.to_dict()


def _data(seed, n=6, size=16):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n // 2, n):
        masks[i, 3:3 + i, 4:9] = 1
    maps = rng.random((n, size, size)) * 0.5 + masks * rng.random((n, size, size)) * 0.6
    return maps.astype(np.float32), masks


def test_categories_and_mean(tmp_path):
    metric = AnomalyMetric(output_dir=str(tmp_path))
    data = {c: _data(s) for s, c in enumerate(('a', 'b'))}
    for category, (maps, masks) in data.items():
        metric.process({}, [_sample(m, k, category) for m, k in zip(maps, masks)])  # score = map max
    out = metric.evaluate(12)
    for category, (maps, masks) in data.items():
        assert out[f'{category}/pixel_AUROC'] == pytest.approx(100 * auroc(masks, maps))
        assert out[f'{category}/image_AUROC'] == pytest.approx(100 * auroc(masks.any((1, 2)), maps.max((1, 2))))
        assert out[f'{category}/pixel_AUPRO_official'] == pytest.approx(100 * aupro_official(maps, masks))
    for name in METRIC_NAMES:
        assert out[name] == pytest.approx((out[f'a/{name}'] + out[f'b/{name}']) / 2)
    assert json.loads((tmp_path / 'anomaly_metrics.json').read_text())['categories']['b']['num_images'] == 6


def test_category_without_anomalies_is_null_in_json(tmp_path):
    metric = AnomalyMetric(output_dir=str(tmp_path))
    maps, masks = _data(0)
    metric.process({}, [_sample(m, np.zeros_like(k), 'good_only', 0.1) for m, k in zip(maps, masks)])
    out = metric.evaluate(6)
    assert np.isnan(out['pixel_AUROC']) and np.isnan(out['image_AUROC'])
    report = json.loads((tmp_path / 'anomaly_metrics.json').read_text())
    assert report['categories']['good_only']['pixel_AUPRO_200thr'] is None


def test_eval_size_and_errors(tmp_path):
    maps, masks = _data(1, size=32)
    metric = AnomalyMetric(eval_size=(16, 16), output_dir=str(tmp_path))
    metric.process({}, [_sample(m, k, 'c') for m, k in zip(maps, masks)])
    assert metric.results[0]['shape'] == (16, 16)
    with pytest.raises(ValueError, match='differ in size'):
        AnomalyMetric().process({}, [_sample(maps[0], masks[0][:8], 'c')])
    sample = _sample(maps[0], masks[0], 'c')
    del sample['anomaly_map']
    with pytest.raises(KeyError, match='anomaly_map'):
        AnomalyMetric().process({}, [sample])
    with pytest.raises(ValueError, match='pixel_mode'):
        AnomalyMetric(pixel_mode='approximate')
