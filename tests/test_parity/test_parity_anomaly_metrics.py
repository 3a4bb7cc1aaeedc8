"""Anomaly metric parity with MVTec's official scripts, AnomalyCLIP/MuSc, scikit-learn and anomalib.

Fixtures: $OVSEG_PARITY_DIR/anomaly/metrics_*.npz, every file listed in metrics_manifest.json.

Tolerances (``ovseg.testing.assert_close`` with a stated ``atol``; every value lies in [0, 1]): ovseg
computes in float64 and the references (MVTec's scripts, scikit-learn, AnomalyCLIP's 200 thresholds) too,
but with other algorithms (sorted cumulative sums, trapezoids over different grids) whose roundings differ
by ~1e-13 over the fixtures' ~1e5 pixels: 1e-9 leaves room and still separates the AUPRO variants (up to
4e-3 apart, README). anomalib's values are float32 results of sums over the same pixels: sqrt(n) float32
roundings of values <= 1 would be ~4e-5, but its thresholds and counts are exact, so its error is a few
roundings of the final ratios: 1e-6.
"""
import json
import re

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from ovseg.evaluation.anomaly import (AnomalyMetric, aupro_200_from_table, aupro_200_thresholds,
                                      aupro_official_from_table, auroc, average_precision, f1_max,
                                      merge_tables, pro_table, region_weights)
from ovseg.testing import assert_close, parity_dir

FOLDER = 'anomaly'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
EXACT = 1e-9  # README: float64 accumulation
FLOAT32 = 1e-6  # README: anomalib / torchmetrics float32 values


def _files():
    if ROOT is None:
        return []
    return sorted(json.loads((ROOT / 'metrics_manifest.json').read_text())['files'])


@pytest.fixture(scope='module', params=_files())
def case(request):
    fx = np.load(ROOT / request.param)
    data = {k: fx[k] for k in fx.files}
    data['table'] = pro_table(data['anomaly_maps'], data['gt_masks'])
    return data


def _limits(fx, prefix):
    """{key: fpr limit} of every '<prefix>_lim0p05'-style value in the fixture."""
    out = {}
    for key in fx:
        match = re.fullmatch(rf'{prefix}_lim(\d+)p(\d+)', key)
        if match:
            out[key] = float(f'{match.group(1)}.{match.group(2)}')
    return out


def test_parity_anomaly_regions(case):
    for connectivity, key in ((8, 'n_regions_8conn'), (4, 'n_regions_4conn')):
        counts = [region_weights(m, connectivity)[1] for m in case['gt_masks']]
        np.testing.assert_array_equal(counts, case[key])
    assert case['table'].num_regions == int(case['n_regions_8conn'].sum())


def test_parity_anomaly_aupro_official(case):
    limits = _limits(case, 'aupro_mvtec_official')
    assert limits, 'fixture lists no official AUPRO limits'
    assert_close(aupro_official_from_table(case['table'], 0.3), case['aupro_mvtec_official'], atol=EXACT, scale=0)
    for key, limit in limits.items():
        assert_close(aupro_official_from_table(case['table'], limit), case[key], atol=EXACT, scale=0, name=key)
    for key, limit in _limits(case, 'aupro_anomalib').items():
        assert_close(aupro_official_from_table(case['table'], limit), case[key], atol=FLOAT32, scale=0, name=key)


def test_parity_anomaly_aupro_200_thresholds(case):
    value = aupro_200_from_table(case['table'])
    assert_close(value, case['aupro_anomalyclip'], atol=EXACT, scale=0)
    assert_close(value, case['aupro_musc'], atol=EXACT, scale=0)
    f64 = aupro_200_thresholds(case['anomaly_maps'].astype(np.float64), case['gt_masks'])
    assert_close(f64, case['aupro_anomalyclip_f64'], atol=EXACT, scale=0)


def test_parity_anomaly_classification(case):
    masks, maps = case['gt_masks'], case['anomaly_maps']
    labels, scores = case['labels'], case['image_scores']
    for level, (y, s) in dict(pixel=(masks, maps), image=(labels, scores)).items():
        f1, threshold = f1_max(y, s, return_threshold=True)
        got = dict(auroc=auroc(y, s), ap=average_precision(y, s), f1max=f1)
        for name, value in got.items():
            assert_close(value, case[f'{level}_{name}'], atol=EXACT, scale=0)
            assert_close(value, case[f'anomalib_{level}_{name}'], atol=FLOAT32, scale=0)
        assert_close(threshold, case[f'{level}_f1max_threshold'], atol=EXACT, scale=0)
    assert_close(auroc(labels, scores), case['image_auroc_mvtec_official'], atol=EXACT, scale=0)


def test_parity_anomaly_tables_add_up(case):
    """Per-image tables merged in any grouping give the pooled numbers."""
    maps, masks = case['anomaly_maps'], case['gt_masks']
    merged = merge_tables([pro_table(maps[i:i + 1], masks[i:i + 1]) for i in range(len(maps))][::-1])
    for fn in (aupro_official_from_table, aupro_200_from_table):
        assert fn(merged) == pytest.approx(fn(case['table']), abs=1e-12)


def _samples(case, start, stop):
    out = []
    for amap, mask, score in zip(case['anomaly_maps'][start:stop], case['gt_masks'][start:stop],
                                 case['image_scores'][start:stop]):
        sample = SegDataSample(metainfo=dict(category='synthetic', img_path='x.png'))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(mask[None].astype(np.int64)))
        sample.anomaly_map = PixelData(data=torch.from_numpy(amap[None]))
        sample.pred_score = torch.tensor(float(score))
        out.append(sample.to_dict())
    return out


@pytest.mark.parametrize('mode', ['exact', 'binned'])
def test_parity_anomaly_metric_class(case, tmp_path, mode):
    metric = AnomalyMetric(pixel_mode=mode, output_dir=str(tmp_path))
    n = len(case['anomaly_maps'])
    for start in range(0, n, 5):
        metric.process({}, _samples(case, start, min(n, start + 5)))
    out = metric.evaluate(n)
    keys = dict(image_AUROC='image_auroc', image_AP='image_ap', image_F1max='image_f1max',
                pixel_AUROC='pixel_auroc', pixel_AP='pixel_ap', pixel_F1max='pixel_f1max',
                pixel_AUPRO_official='aupro_mvtec_official', pixel_AUPRO_200thr='aupro_anomalyclip')
    # binned (65,536 bins over [0, 1]): exact for the quantised maps, close to the float32 numbers
    atol = dict(exact=EXACT, binned=1e-4)[mode]
    for name, key in keys.items():
        tol = EXACT if name.startswith('image_') else atol
        assert out[name] / 100 == pytest.approx(float(case[key]), abs=tol), name
        assert out[f'synthetic/{name}'] == out[name]
    report = json.loads((tmp_path / 'anomaly_metrics.json').read_text())
    assert report['categories']['synthetic']['num_images'] == n
    assert report['mean']['pixel_AUPRO_official'] == pytest.approx(out['pixel_AUPRO_official'])
