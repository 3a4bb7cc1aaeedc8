"""OVPanopticMetric and OVInstanceAPMetric on data samples: hand-worked values, the real COCO sample
through the dataset pipeline, agreement with pq_compute, and 2-process gloo evaluation."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import DefaultSampler
from mmengine.registry import init_default_scope
from PIL import Image

from ovseg.datasets import COCOPanopticDataset
from ovseg.evaluation import OVInstanceAPMetric, OVPanopticMetric, pq_compute

REPO = Path(__file__).resolve().parents[3]
SAMPLE = Path(os.environ.get('OVSEG_COCO_PANOPTIC_SAMPLE',
                             REPO.parent / 'shared' / 'data' / 'coco_panoptic_sample'))
CLASSES = ('cat', 'person', 'grass')
META = dict(classes=CLASSES, thing_classes=('cat', 'person'))


def sample(gt, gt_segments, pred=None, pred_segments=(), instances=None, name='x'):
    """A data sample dict as mmengine hands it to metrics (``SegDataSample.to_dict()``)."""
    out = dict(gt_panoptic_seg=dict(data=torch.as_tensor(gt)[None]), segments_info=list(gt_segments),
               img_path=f'{name}.jpg')
    if pred is not None:
        out['pred_panoptic_seg'] = dict(data=torch.as_tensor(pred)[None], segments_info=list(pred_segments))
    if instances is not None:
        masks, scores, labels = instances
        out['pred_instances'] = dict(masks=torch.as_tensor(np.asarray(masks, bool)),
                                     scores=torch.tensor(scores, dtype=torch.float32),
                                     labels=torch.tensor(labels))
    return out


def seg(i, label, crowd=0, thing=True):
    return dict(id=i, label=label, iscrowd=crowd, isthing=thing)


def _crowd_scene():
    """10 x 10: cat A (rows 0-1), cat B (rows 2-3), crowd of cats (rows 4-5), grass (rows 6-9)."""
    gt = np.zeros((10, 10), np.int32)
    gt[:2], gt[2:4], gt[4:6], gt[6:] = 1, 2, 3, 4
    return gt, [seg(1, 0), seg(2, 0), seg(3, 0, crowd=1), seg(4, 2, thing=False)]


def test_panoptic_metric_hand_worked():
    gt, segments = _crowd_scene()
    pred = np.zeros((10, 10), np.int32)
    pred[:2] = 1  # cat A exactly: TP, IoU 1
    pred[2:3] = 2  # cat on half of cat B: IoU 10 / 20 = 0.5 -> no match: FP, and cat B is a FN
    pred[4:6] = 3  # cat on the cat crowd: ignored
    pred[6:9] = 4  # grass, 30 of 40 px: IoU 0.75
    metric = OVPanopticMetric()
    metric.dataset_meta = META
    metric.process({}, [sample(gt, segments, pred, [dict(id=1, category_id=0), dict(id=2, category_id=0),
                                                     dict(id=3, category_id=0), dict(id=4, category_id=2)])])
    result = metric.evaluate(1)
    # cat: TP 1 IoU 1, FP 1, FN 1 -> PQ 1/2, SQ 1, RQ 1/2; grass: PQ = SQ = 0.75, RQ 1
    assert result == pytest.approx(dict(PQ=62.5, SQ=87.5, RQ=75.0, PQ_th=50.0, SQ_th=100.0, RQ_th=50.0,
                                        PQ_st=75.0, SQ_st=75.0, RQ_st=100.0))


def test_panoptic_metric_things_only_has_no_stuff_keys():
    gt, segments = _crowd_scene()
    metric = OVPanopticMetric(thing_classes=[0, 1, 2])  # argument overrides the metainfo
    metric.dataset_meta = META
    metric.process({}, [sample(gt, segments, gt, [dict(id=i, category_id=s['label']) for i, s in
                                                  zip((1, 2, 3, 4), segments)])])
    assert metric.evaluate(1) == dict(PQ=100.0, SQ=100.0, RQ=100.0, PQ_th=100.0, SQ_th=100.0, RQ_th=100.0)


def test_panoptic_metric_names_the_missing_pipeline_steps():
    metric = OVPanopticMetric()
    metric.dataset_meta = META
    with pytest.raises(KeyError, match='PackPanopticInputs'):
        metric.process({}, [dict(pred_panoptic_seg=dict(data=torch.zeros(1, 2, 2)), img_path='x')])


def test_instance_ap_hand_worked():
    gt, segments = _crowd_scene()
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :2] = True  # cat A exactly (score 0.9): TP at every IoU threshold
    masks[1, 4:6] = True  # the crowd region (score 0.95): matched to the crowd, ignored
    masks[2, 8:, :3] = True  # on the grass (score 0.8): FP
    metric = OVInstanceAPMetric()
    metric.dataset_meta = META
    metric.process({}, [sample(gt, segments, instances=(masks, [0.9, 0.95, 0.8], [0, 0, 0]))])
    result = metric.evaluate(1)
    # 2 cat instances; ranked TP, FP -> recall 0.5 at precision 1, never more: 51 of the 101 recall
    # points have precision 1 -> AP = 51/101 at every IoU; 'person' has no GT and no detection.
    assert result['AP'] == pytest.approx(100 * 51 / 101, abs=1e-3)
    assert result['AP50'] == result['AP75'] == result['APs'] == result['AP']
    assert math.isnan(result['APm']) and math.isnan(result['APl'])  # no medium / large instance


def test_instance_ap_perfect_and_empty_predictions():
    gt, segments = _crowd_scene()
    metric = OVInstanceAPMetric()
    metric.dataset_meta = META
    masks = np.stack([gt == 1, gt == 2])
    metric.process({}, [sample(gt, segments, instances=(masks, [0.9, 0.8], [0, 0]))])
    assert metric.evaluate(1)['AP'] == pytest.approx(100.0)
    metric.process({}, [sample(gt, segments, instances=(np.zeros((0, 10, 10)), [], []))])
    assert all(math.isnan(v) for v in metric.evaluate(1).values())


requires_sample = pytest.mark.skipif(not (SAMPLE / 'gt' / 'panoptic_examples.json').is_file(),
                                     reason=f'COCO panoptic sample not found at {SAMPLE}')


@requires_sample
def test_metrics_on_the_real_sample_through_the_pipeline(tmp_path):
    """GT as prediction: PQ 100 and AP 100; a relabelled segment gives the same PQ as pq_compute."""
    init_default_scope('mmseg')
    dataset = COCOPanopticDataset(
        ann_file=str(SAMPLE / 'gt' / 'panoptic_examples.json'), test_mode=True,
        data_prefix=dict(img_path=str(SAMPLE / 'images'),
                         seg_map_path=str(SAMPLE / 'gt' / 'panoptic_examples')),
        pipeline=[dict(type='LoadPanopticAnnotations'), dict(type='PackPanopticInputs')])
    pq_metric, ap_metric = OVPanopticMetric(), OVInstanceAPMetric()
    for metric in (pq_metric, ap_metric):
        metric.dataset_meta = dataset.metainfo
    samples = []
    for i in range(len(dataset)):
        data = dataset[i]['data_samples']
        ids = data.gt_panoptic_seg.data[0].numpy()
        segments = data.metainfo['segments_info']
        pred_segments = [dict(id=s['id'], category_id=s['label']) for s in segments]
        things = [s for s in segments if s['isthing'] and not s['iscrowd']]
        item = sample(ids, segments, ids, pred_segments, instances=(
            np.stack([ids == s['id'] for s in things]), [1.0] * len(things), [s['label'] for s in things]))
        assert item['segments_info'] == segments and 'segments_info' in data.metainfo
        samples.append(item)
    pq_metric.process({}, samples)
    ap_metric.process({}, samples)
    assert pq_metric.evaluate(2) == {k: 100.0 for k in ('PQ', 'SQ', 'RQ', 'PQ_th', 'SQ_th', 'RQ_th',
                                                       'PQ_st', 'SQ_st', 'RQ_st')}
    ap = ap_metric.evaluate(2)
    assert ap['AP'] == ap['AP50'] == pytest.approx(100.0)

    # relabel the first non-crowd thing of image 0 as class 0 (person) -> FP + FN, compare with pq_compute
    is_thing = [c in dataset.metainfo['thing_classes'] for c in dataset.metainfo['classes']]
    first = next(s for s in samples[0]['pred_panoptic_seg']['segments_info']
                 if is_thing[s['category_id']] and s['category_id'] != 0)
    first['category_id'] = 0
    pq_metric.process({}, samples)
    result = pq_metric.evaluate(2)
    reference = _pq_compute_on(samples, dataset, tmp_path)
    assert result['PQ'] == pytest.approx(100 * reference['All']['pq'])
    assert result['PQ_th'] == pytest.approx(100 * reference['Things']['pq']) and result['PQ_th'] < 100


def _pq_compute_on(samples, dataset, tmp_path):
    """Write the predictions as a COCO panoptic prediction set and score them with pq_compute."""
    coco = json.loads((SAMPLE / 'gt' / 'panoptic_examples.json').read_text())
    category_ids = sorted(c['id'] for c in coco['categories'])
    (tmp_path / 'pred').mkdir()
    annotations = []
    for ann, item in zip(coco['annotations'], samples):
        ids = item['pred_panoptic_seg']['data'][0].numpy().astype(np.int64)
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / 'pred' / ann['file_name'])
        annotations.append(dict(image_id=ann['image_id'], file_name=ann['file_name'], segments_info=[
            dict(id=s['id'], category_id=category_ids[s['category_id']])
            for s in item['pred_panoptic_seg']['segments_info']]))
    (tmp_path / 'pred.json').write_text(json.dumps(dict(annotations=annotations)))
    return pq_compute(str(SAMPLE / 'gt' / 'panoptic_examples.json'), str(tmp_path / 'pred.json'),
                      gt_folder=str(SAMPLE / 'gt' / 'panoptic_examples'), pred_folder=str(tmp_path / 'pred'))


NUM_IMAGES = 5


def _random_samples():
    rng = np.random.default_rng(0)
    samples = []
    for i in range(NUM_IMAGES):
        gt = np.kron(rng.integers(0, 5, (4, 5)), np.ones((4, 4), np.int64)).astype(np.int32)
        pred = np.kron(rng.integers(0, 5, (4, 5)), np.ones((4, 4), np.int64)).astype(np.int32)
        pred[rng.random(pred.shape) < 0.1] = 0
        gt_segments = [seg(int(k), int(k) % 3, crowd=int(k == 4), thing=int(k) % 3 < 2)
                       for k in np.unique(gt) if k]
        pred_segments = [dict(id=int(k), category_id=int(k + i) % 3) for k in np.unique(pred) if k]
        masks = np.stack([pred == k for k in range(1, 5)])
        samples.append(sample(gt, gt_segments, pred, pred_segments, name=str(i), instances=(
            masks, rng.random(4).tolist(), [k % 2 for k in range(4)])))
    return samples


def _evaluate_share():
    samples, results = _random_samples(), {}
    for metric in (OVPanopticMetric(), OVInstanceAPMetric()):
        metric.dataset_meta = META
        for index in DefaultSampler(list(range(NUM_IMAGES)), shuffle=False):
            metric.process({}, [samples[index]])
        results.update(metric.evaluate(NUM_IMAGES))
    return results


def _worker(rank, init_file, out_file):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        results = _evaluate_share()
        if rank == 0:
            Path(out_file).write_text(json.dumps(results))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    single = _evaluate_share()
    mp.start_processes(_worker, args=(str(tmp_path / 'init'), str(tmp_path / 'dist.json')), nprocs=2,
                       start_method='fork')
    distributed = json.loads((tmp_path / 'dist.json').read_text())
    assert distributed.keys() == single.keys() and 'PQ' in single and 'AP' in single
    for key, value in single.items():
        assert distributed[key] == pytest.approx(value, nan_ok=True), key
