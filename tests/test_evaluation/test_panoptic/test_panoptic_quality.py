"""Panoptic quality as panopticapi computes it: hand-worked cases, the real COCO sample, random maps.

Every expected number below is worked out by hand in the comments (10 x 10 images unless stated).
"""
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg.evaluation import pq_compute
from ovseg.evaluation.panoptic import pq_stat_single
from ovseg.evaluation.panoptic.pq import read_panoptic_png

REPO = Path(__file__).resolve().parents[3]
SAMPLE = Path(os.environ.get('OVSEG_COCO_PANOPTIC_SAMPLE',
                             REPO.parent / 'shared' / 'data' / 'coco_panoptic_sample'))
CAT, DOG, GRASS, PERSON = 1, 2, 3, 4
CATEGORIES = [dict(id=CAT, name='cat', isthing=1), dict(id=DOG, name='dog', isthing=1),
              dict(id=GRASS, name='grass', isthing=0), dict(id=PERSON, name='person', isthing=1)]


def id_to_rgb(ids):
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def segs(ids, spec):
    """segments_info for ``spec`` = {segment id: (category, iscrowd)}; areas counted in ``ids``."""
    return [dict(id=i, category_id=c, iscrowd=crowd, area=int((ids == i).sum()))
            for i, (c, crowd) in spec.items()]


def write_set(folder, name, images, categories=CATEGORIES, image_ids=None):
    """Write ``name.json`` + ``name/<id>.png`` for images = [(ids, segments_info)]; return the JSON path."""
    (folder / name).mkdir(parents=True)
    image_ids = list(range(len(images))) if image_ids is None else image_ids
    annotations = []
    for k, (ids, segments) in zip(image_ids, images):
        Image.fromarray(id_to_rgb(ids)).save(folder / name / f'{k}.png')
        annotations.append(dict(image_id=k, file_name=f'{k}.png', segments_info=segments))
    data = dict(images=[dict(id=k, file_name=f'{k}.jpg', height=ids.shape[0], width=ids.shape[1])
                        for k, (ids, _) in zip(image_ids, images)],
                annotations=annotations, categories=categories)
    path = folder / f'{name}.json'
    path.write_text(json.dumps(data))
    return str(path)


def evaluate(tmp_path, gt_images, pred_images, categories=CATEGORIES):
    return pq_compute(write_set(tmp_path, 'gt', gt_images, categories),
                      write_set(tmp_path, 'pred', pred_images, categories))


def assert_split(result, pq, sq, rq, n):
    assert result['n'] == n
    assert result['pq'] == pytest.approx(pq, abs=1e-12)
    assert result['sq'] == pytest.approx(sq, abs=1e-12)
    assert result['rq'] == pytest.approx(rq, abs=1e-12)


def test_void_is_removed_from_the_union_and_void_predictions_are_ignored(tmp_path):
    gt = np.zeros((10, 10), np.int64)
    gt[:5, :5] = 1  # cat, 25 px
    gt[5:] = 2  # grass, 50 px; gt[:5, 5:] is void (25 px)
    pred = np.zeros((10, 10), np.int64)
    pred[:5, :6] = 7  # cat, 30 px: 25 on the cat, 5 on void -> union 30 + 25 - 25 - 5 = 25, IoU 1
    pred[5:, :8] = 8  # grass, 40 px inside the grass -> IoU 40 / 50 = 0.8
    pred[:5, 6:] = 9  # dog, 20 px all on void -> ignored, not a FP
    result = evaluate(tmp_path, [(gt, segs(gt, {1: (CAT, 0), 2: (GRASS, 0)}))],
                      [(pred, segs(pred, {7: (CAT, 0), 8: (GRASS, 0), 9: (DOG, 0)}))])
    assert_split(result['All'], pq=0.9, sq=0.9, rq=1.0, n=2)  # cat 1.0, grass 0.8
    assert_split(result['Things'], pq=1.0, sq=1.0, rq=1.0, n=1)
    assert_split(result['Stuff'], pq=0.8, sq=0.8, rq=1.0, n=1)
    assert result['per_class'][DOG] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}  # no TP, FP or FN
    assert set(result['per_class']) == {CAT, DOG, GRASS, PERSON}


def test_iou_of_exactly_one_half_is_not_a_match(tmp_path):
    gt = np.full((10, 10), 2, np.int64)  # grass, 80 px
    gt[:2] = 1  # cat, 20 px
    pred = np.full((10, 10), 6, np.int64)  # grass, rows 1..9: 90 px, IoU 80 / 90
    pred[0] = 5  # cat, 10 px inside the cat: IoU 10 / 20 = 0.5, not > 0.5 -> FN + FP
    result = evaluate(tmp_path, [(gt, segs(gt, {1: (CAT, 0), 2: (GRASS, 0)}))],
                      [(pred, segs(pred, {5: (CAT, 0), 6: (GRASS, 0)}))])
    # cat: TP 0, FP 1, FN 1 -> 0; grass: TP 1, IoU 8/9
    assert_split(result['All'], pq=4 / 9, sq=4 / 9, rq=0.5, n=2)
    assert result['per_class'][CAT] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
    pred[1, 0] = 5  # cat now 11 px inside the cat: IoU 11 / 20 = 0.55 -> TP
    result = pq_compute(write_set(tmp_path / 'b', 'gt', [(gt, segs(gt, {1: (CAT, 0), 2: (GRASS, 0)}))]),
                        write_set(tmp_path / 'b', 'pred', [(pred, segs(pred, {5: (CAT, 0), 6: (GRASS, 0)}))]))
    # grass pred now 89 px, 80 on grass -> IoU 80 / 89
    assert result['per_class'][CAT] == pytest.approx({'pq': 0.55, 'sq': 0.55, 'rq': 1.0})
    assert result['per_class'][GRASS]['pq'] == pytest.approx(80 / 89)


def _things_only_images():
    # image 0: crowd person (rows 0-4), person (rows 5-6), void (rows 7-9)
    gt0 = np.zeros((10, 10), np.int64)
    gt0[:5], gt0[5:7] = 3, 4
    pred0 = np.zeros((10, 10), np.int64)
    pred0[:3] = 1  # person, 30 px all on the person crowd -> ignored
    pred0[3:5] = 3  # dog, 20 px on the person crowd: the crowd of another class does not excuse -> FP
    pred0[5:7] = 2  # person, IoU 1 -> TP
    pred0[7:] = 4  # person, 30 px on void -> ignored
    image0 = ((gt0, segs(gt0, {3: (PERSON, 1), 4: (PERSON, 0)})),
              (pred0, segs(pred0, {1: (PERSON, 0), 2: (PERSON, 0), 3: (DOG, 0), 4: (PERSON, 0)})))
    # image 1: crowd person (rows 0-1), dog (rows 2-9, cols 0-4, 40 px), void (rows 2-9, cols 5-9)
    gt1 = np.zeros((10, 10), np.int64)
    gt1[:2], gt1[2:, :5] = 1, 2
    pred1 = np.zeros((10, 10), np.int64)
    # person: 4 crowd + 2 void + 4 dog px: 6/10 > 0.5 -> ignored
    pred1[0, :4], pred1[2, 5:7], pred1[2, :4] = 7, 7, 7
    pred1[1, :3], pred1[3, 5:7], pred1[3, :5] = 8, 8, 8  # person: 3 crowd + 2 void + 5 dog: 5/10 -> FP
    pred1[4:, :5], pred1[2, 4] = 9, 9  # dog: the other 31 dog px -> IoU 31 / 40 -> TP
    image1 = ((gt1, segs(gt1, {1: (PERSON, 1), 2: (DOG, 0)})),
              (pred1, segs(pred1, {7: (PERSON, 0), 8: (PERSON, 0), 9: (DOG, 0)})))
    return image0, image1


def test_crowd_and_void_on_a_things_only_category_set(tmp_path):
    image0, image1 = _things_only_images()
    things = [dict(id=DOG, name='dog', isthing=1), dict(id=PERSON, name='person', isthing=1)]
    result = evaluate(tmp_path, [image0[0], image1[0]], [image0[1], image1[1]], things)
    # person: TP 1 (IoU 1), FP 1, FN 0 (crowds are never FN) -> PQ 1 / 1.5, SQ 1, RQ 2/3
    # dog: TP 1 (IoU 0.775), FP 1 -> PQ 0.775 / 1.5, SQ 0.775, RQ 2/3
    assert result['per_class'][PERSON] == pytest.approx({'pq': 2 / 3, 'sq': 1.0, 'rq': 2 / 3})
    assert result['per_class'][DOG] == pytest.approx({'pq': 0.775 / 1.5, 'sq': 0.775, 'rq': 2 / 3})
    expected = dict(pq=(2 / 3 + 0.775 / 1.5) / 2, sq=(1 + 0.775) / 2, rq=2 / 3, n=2)
    assert_split(result['All'], **expected)
    assert_split(result['Things'], **expected)
    # panopticapi raises ZeroDivisionError here; ovseg reports an empty split
    assert result['Stuff'] == {'pq': 0.0, 'sq': 0.0, 'rq': 0.0, 'n': 0}


def test_json_area_of_the_ground_truth_is_used_as_in_panopticapi():
    gt = np.zeros((4, 4), np.int64)
    gt[:2] = 1  # 8 px, but the JSON says 12
    pred = np.zeros((4, 4), np.int64)
    pred[:2] = 1
    stat = pq_stat_single(gt, [dict(id=1, category_id=CAT, iscrowd=0, area=12)], pred,
                          [dict(id=1, category_id=CAT)])
    assert stat[CAT].tp == 1 and stat[CAT].iou == pytest.approx(8 / 12)
    counted = pq_stat_single(gt, [dict(id=1, category_id=CAT, iscrowd=0)], pred,
                             [dict(id=1, category_id=CAT)])
    assert counted[CAT].iou == 1.0  # without 'area' the pixels are counted


def test_inconsistent_predictions_are_errors():
    ids = np.zeros((4, 4), np.int64)
    ids[0] = 5
    with pytest.raises(KeyError, match='segment id 5 is in the prediction PNG'):
        pq_stat_single(ids, [], ids, [], image_id='x')
    with pytest.raises(KeyError, match=r'\[6\] are in segments_info'):
        pq_stat_single(ids, [], ids, [dict(id=5, category_id=CAT), dict(id=6, category_id=CAT)])
    with pytest.raises(KeyError, match='unknown category_id 9'):
        pq_stat_single(ids, [], ids, [dict(id=5, category_id=9)], categories={CAT: {}})


def test_missing_prediction_for_an_image(tmp_path):
    gt = np.ones((4, 4), np.int64)
    gt_json = write_set(tmp_path, 'gt', [(gt, segs(gt, {1: (CAT, 0)}))] * 2)
    pred_json = write_set(tmp_path, 'pred', [(gt, segs(gt, {1: (CAT, 0)}))])
    with pytest.raises(KeyError, match='No prediction for the image with id 1'):
        pq_compute(gt_json, pred_json)


def _reference_stats(gt, gt_segments, pred, pred_segments):
    """Brute-force per-segment masks, written from the PQ definition (independent of pq.py)."""
    stats = defaultdict(lambda: dict(iou=0.0, tp=0, fp=0, fn=0))
    matched_gt, matched_pred = set(), set()
    for g in gt_segments:
        for p in pred_segments:
            if g['iscrowd'] or g['category_id'] != p['category_id']:
                continue
            gm, pm = gt == g['id'], pred == p['id']
            inter, union = (gm & pm).sum(), (gm | (pm & (gt != 0))).sum()
            if inter / union > 0.5:
                stats[g['category_id']]['tp'] += 1
                stats[g['category_id']]['iou'] += inter / union
                matched_gt.add(g['id'])
                matched_pred.add(p['id'])
    for g in gt_segments:
        if g['id'] not in matched_gt and not g['iscrowd']:
            stats[g['category_id']]['fn'] += 1
    for p in pred_segments:
        if p['id'] in matched_pred:
            continue
        pm = pred == p['id']
        crowd = [g['id'] for g in gt_segments if g['iscrowd'] and g['category_id'] == p['category_id']]
        ignored = (pm & ((gt == 0) | np.isin(gt, crowd[-1:]))).sum()
        if ignored / pm.sum() <= 0.5:
            stats[p['category_id']]['fp'] += 1
    return stats


@pytest.mark.parametrize('seed', range(6))
def test_random_maps_match_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 32)

    def random_map(num):
        # blocky maps so segments overlap substantially (4x4 blocks, then a few pixel flips)
        ids = np.kron(rng.integers(0, num + 1, (6, 8)), np.ones((4, 4), np.int64))
        flip = rng.random(shape) < 0.05
        ids[flip] = rng.integers(0, num + 1, flip.sum())
        return ids

    gt, pred = random_map(6), random_map(6)
    gt_segments = [dict(id=i, category_id=int(rng.integers(1, 4)), iscrowd=int(rng.random() < 0.2))
                   for i in np.unique(gt) if i]
    pred_segments = [dict(id=i, category_id=int(rng.integers(1, 4))) for i in np.unique(pred) if i]
    stat = pq_stat_single(gt, gt_segments, pred, pred_segments)
    reference = _reference_stats(gt, gt_segments, pred, pred_segments)
    for c in range(1, 4):
        got, want = stat[c], reference.get(c, dict(iou=0.0, tp=0, fp=0, fn=0))
        assert (got.tp, got.fp, got.fn) == (want['tp'], want['fp'], want['fn'])
        assert got.iou == pytest.approx(want['iou'])


requires_sample = pytest.mark.skipif(not (SAMPLE / 'gt' / 'panoptic_examples.json').is_file(),
                                     reason=f'COCO panoptic sample not found at {SAMPLE}')


@requires_sample
def test_real_sample_against_itself():
    gt_json = str(SAMPLE / 'gt' / 'panoptic_examples.json')
    result = pq_compute(gt_json, gt_json)  # default folders: the JSON path without '.json'
    for split, n in (('All', 8), ('Things', 4), ('Stuff', 4)):  # 8 categories occur, 4 of them things
        assert result[split] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': n}
    assert len(result['per_class']) == 133


@requires_sample
def test_real_sample_against_a_perturbed_prediction(tmp_path):
    """Five edits of the ground truth, each with a hand-derived effect on the counts."""
    gt_json = json.loads((SAMPLE / 'gt' / 'panoptic_examples.json').read_text())
    images = []
    for ann in gt_json['annotations']:
        ids = read_panoptic_png(SAMPLE / 'gt' / 'panoptic_examples' / ann['file_name'])
        segments = {s['id']: dict(id=s['id'], category_id=s['category_id']) for s in ann['segments_info']}
        by_cat = {}
        for s in ann['segments_info']:
            by_cat.setdefault((s['category_id'], s['iscrowd']), []).append(s)
        if ann['image_id'] == 142238:
            segments[by_cat[(37, 0)][0]['id']]['category_id'] = 1  # (1) ball called person: 37 FN, 1 FP
            # (2) the person crowd predicted as a person: all on same-class crowd -> ignored
        else:
            gone = by_cat[(125, 0)][0]['id']  # (3) category 125 not predicted: FN
            ids[ids == gone] = 0
            del segments[gone]
            segments[by_cat[(1, 1)][0]['id']]['category_id'] = 8  # (4) person crowd called 8 (truck): FP
            # (5) a 19 (horse) segment shrunk to its top rows: still a match with IoU kept / area
            horse = max(by_cat[(19, 0)], key=lambda s: s['area'])
            rows = np.nonzero((ids == horse['id']).any(axis=1))[0]
            cut = (ids == horse['id']) & (np.arange(ids.shape[0])[:, None] > rows[len(rows) * 3 // 4])
            ids[cut] = 0
            horse_iou = (ids == horse['id']).sum() / horse['area']
        images.append((ids, list(segments.values())))
    gt_path = str(SAMPLE / 'gt' / 'panoptic_examples.json')
    image_ids = [ann['image_id'] for ann in gt_json['annotations']][::-1]  # matched by id, not order
    pred_json = write_set(tmp_path, 'pred', images[::-1], gt_json['categories'], image_ids)
    result = pq_compute(gt_path, pred_json,
                        gt_folder=str(SAMPLE / 'gt' / 'panoptic_examples'))
    count = {}
    for ann in gt_json['annotations']:
        for s in ann['segments_info']:
            if not s['iscrowd']:
                count[s['category_id']] = count.get(s['category_id'], 0) + 1
    assert 0.5 < horse_iou < 1.0
    # TP, FP, FN and IoU sum per category after the five edits
    expected = {c: (n, 0, 0, float(n)) for c, n in count.items()}
    expected[37] = (0, 0, 1, 0.0)
    expected[1] = (count[1], 1, 0, float(count[1]))
    expected[125] = (0, 0, 1, 0.0)
    expected[8] = (count[8], 1, 0, float(count[8]))
    expected[19] = (count[19], 0, 0, count[19] - 1 + horse_iou)
    per_class = {}
    for c, (tp, fp, fn, iou) in expected.items():
        denominator = tp + 0.5 * fp + 0.5 * fn
        per_class[c] = dict(pq=iou / denominator, sq=iou / tp if tp else 0.0, rq=tp / denominator)
        assert result['per_class'][c] == pytest.approx(per_class[c]), c
    things = {c['id'] for c in gt_json['categories'] if c['isthing']}
    for split, keep in (('All', lambda c: True), ('Things', things.__contains__),
                        ('Stuff', lambda c: c not in things)):
        chosen = [per_class[c] for c in per_class if keep(c)]
        assert result[split]['n'] == len(chosen)
        for key in ('pq', 'sq', 'rq'):
            assert result[split][key] == pytest.approx(np.mean([r[key] for r in chosen]))
    assert result['All']['n'] == 8  # no new category: 8 keeps its count via its own segments
