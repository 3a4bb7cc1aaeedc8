"""Panoptic quality (PQ = SQ · RQ) computed the way the COCO panoptic API (``panopticapi``) does.

The algorithm, per image (Kirillov et al., *Panoptic Segmentation*, CVPR 2019, as implemented in
panopticapi's ``evaluation.py``):

1. Predicted segment areas are counted in the prediction PNG; a PNG id missing from the JSON, a
   JSON id missing from the PNG, or an unknown category is an error. Ground-truth areas are the
   JSON's ``area`` fields.
2. A ground-truth segment (not crowd) and a predicted segment of the same category match when
   ``IoU > 0.5`` (strictly), with the prediction's pixels on void (segment id 0 of the ground truth)
   removed from the union. Each match adds 1 TP and its IoU to the category.
3. Every unmatched non-crowd ground-truth segment is a FN. Crowd segments are never matched nor FN.
4. An unmatched predicted segment is a FP unless more than half of its area lies on void plus the
   crowd region of its own category (the crowd segment of that category, the last one listed when
   there are several).

Over the dataset, a category counts when it has at least one TP, FP or FN;
``PQ_c = Σ IoU / (TP + FP/2 + FN/2)``, ``SQ_c = Σ IoU / TP`` (0 without TP),
``RQ_c = TP / (TP + FP/2 + FN/2)``; 'All', 'Things' and 'Stuff' average the counted categories.

One deliberate difference: panopticapi divides by zero (``ZeroDivisionError``) when a split has no
counted category, e.g. 'Stuff' of a things-only category set; here that split is
``{'pq': 0.0, 'sq': 0.0, 'rq': 0.0, 'n': 0}``.
"""
import json
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
from mmengine.logging import print_log
from PIL import Image

from ovseg.datasets.transforms.panoptic import rgb_to_panoptic_id

OFFSET = 256 * 256 * 256  # larger than any segment id: gt * OFFSET + pred is a unique pair key
VOID = 0
MATCH_IOU = 0.5
IGNORE_FRACTION = 0.5


@dataclass
class PQStatCat:
    """Sums of one category: matched IoU, true positives, false positives, false negatives."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: 'PQStatCat') -> 'PQStatCat':
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """Per-category :class:`PQStatCat` sums, added over images (``+=``) and averaged at the end."""

    def __init__(self) -> None:
        self.pq_per_cat: Dict[int, PQStatCat] = defaultdict(PQStatCat)

    def __getitem__(self, category_id: int) -> PQStatCat:
        return self.pq_per_cat[category_id]

    def __iadd__(self, other: 'PQStat') -> 'PQStat':
        for category_id, stat in other.pq_per_cat.items():
            self.pq_per_cat[category_id] += stat
        return self

    def pq_average(self, categories: Dict[int, dict],
                   isthing: Optional[bool]) -> Tuple[dict, Dict[int, dict]]:
        """PQ, SQ, RQ averaged over the categories with at least one TP, FP or FN.

        Args:
            categories (dict[int, dict]): category id -> category with ``isthing`` (0/1 or bool).
            isthing (bool, optional): True for things, False for stuff, None for all.

        Returns:
            tuple: ``{'pq', 'sq', 'rq', 'n'}`` (fractions, ``n`` counted categories) and
            per-class ``{category_id: {'pq', 'sq', 'rq'}}`` (0.0 for uncounted categories).
        """
        totals, per_class, n = np.zeros(3), {}, 0
        for category_id, info in categories.items():
            if isthing is not None and bool(info['isthing'] == 1) != isthing:
                continue
            stat = self.pq_per_cat[category_id]
            if stat.tp + stat.fp + stat.fn == 0:
                per_class[category_id] = {'pq': 0.0, 'sq': 0.0, 'rq': 0.0}
                continue
            n += 1
            denominator = stat.tp + 0.5 * stat.fp + 0.5 * stat.fn
            scores = (stat.iou / denominator, stat.iou / stat.tp if stat.tp else 0.0,
                      stat.tp / denominator)
            per_class[category_id] = dict(zip(('pq', 'sq', 'rq'), map(float, scores)))
            totals += scores
        averages = totals / n if n else totals  # panopticapi raises ZeroDivisionError for n == 0
        return dict(pq=float(averages[0]), sq=float(averages[1]), rq=float(averages[2]), n=n), per_class


def _pair_areas(pan_gt: np.ndarray, pan_pred: np.ndarray) -> Dict[Tuple[int, int], int]:
    """Pixel count of every (ground-truth id, predicted id) pair that occurs."""
    keys = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
    pairs, counts = np.unique(keys, return_counts=True)
    return {(int(k // OFFSET), int(k % OFFSET)): int(c) for k, c in zip(pairs, counts)}


def _predicted_areas(pan_pred: np.ndarray, pred_segms: Dict[int, dict], categories,
                     image_id) -> Dict[int, int]:
    """Areas of the predicted segments, with panopticapi's consistency checks."""
    ids, counts = np.unique(pan_pred, return_counts=True)
    areas = {}
    for segment_id, count in zip(ids.tolist(), counts.tolist()):
        if segment_id not in pred_segms:
            if segment_id == VOID:
                continue
            raise KeyError(f'Image {image_id}: segment id {segment_id} is in the prediction PNG '
                           'but not in its segments_info.')
        category_id = pred_segms[segment_id]['category_id']
        if categories is not None and category_id not in categories:
            raise KeyError(f'Image {image_id}: predicted segment {segment_id} has unknown '
                           f'category_id {category_id}.')
        areas[segment_id] = count
    missing = sorted(set(pred_segms) - set(areas))
    if missing:
        raise KeyError(f'Image {image_id}: predicted segment ids {missing} are in segments_info '
                       'but not in the prediction PNG.')
    return areas


def pq_stat_single(pan_gt: np.ndarray, gt_segments: Iterable[dict], pan_pred: np.ndarray,
                   pred_segments: Iterable[dict], categories: Optional[Dict[int, dict]] = None,
                   image_id=None) -> PQStat:
    """TP / FP / FN and matched IoU per category for one image (panopticapi's per-image step).

    Args:
        pan_gt (np.ndarray): (H, W) ground-truth segment ids, 0 void.
        gt_segments (Iterable[dict]): ``id``, ``category_id``, ``iscrowd`` and optionally ``area``
            (as in panopticapi the JSON area is used when given; else it is counted in ``pan_gt``).
        pan_pred (np.ndarray): (H, W) predicted segment ids, 0 = no segment.
        pred_segments (Iterable[dict]): ``id`` and ``category_id``.
        categories (dict[int, dict], optional): known categories; a prediction of another category
            is an error. Default None (not checked).
        image_id: quoted in errors. Default None.

    Returns:
        PQStat: this image's sums.

    Raises:
        KeyError: prediction PNG and segments_info disagree, or an unknown predicted category.
        ValueError: the two maps differ in shape.
    """
    if pan_gt.shape != pan_pred.shape:
        raise ValueError(f'Image {image_id}: ground truth {pan_gt.shape} and prediction '
                         f'{pan_pred.shape} differ in shape.')
    gt_segms = {int(s['id']): s for s in gt_segments}
    pred_segms = {int(s['id']): s for s in pred_segments}
    pred_areas = _predicted_areas(pan_pred, pred_segms, categories, image_id)
    pairs = _pair_areas(pan_gt, pan_pred)
    gt_areas = {i: s['area'] if s.get('area') is not None else 0 for i, s in gt_segms.items()}
    for (gt_id, _), count in pairs.items():
        if gt_id in gt_segms and gt_segms[gt_id].get('area') is None:
            gt_areas[gt_id] += count

    stat, gt_matched, pred_matched = PQStat(), set(), set()
    for (gt_id, pred_id), intersection in pairs.items():
        if gt_id not in gt_segms or pred_id not in pred_segms:
            continue
        gt, pred = gt_segms[gt_id], pred_segms[pred_id]
        if gt.get('iscrowd', 0) == 1 or gt['category_id'] != pred['category_id']:
            continue
        union = pred_areas[pred_id] + gt_areas[gt_id] - intersection - pairs.get((VOID, pred_id), 0)
        iou = intersection / union
        if iou > MATCH_IOU:
            stat[gt['category_id']].tp += 1
            stat[gt['category_id']].iou += iou
            gt_matched.add(gt_id)
            pred_matched.add(pred_id)

    crowd_of_category = {}
    for gt_id, gt in gt_segms.items():
        if gt_id in gt_matched:
            continue
        if gt.get('iscrowd', 0) == 1:
            crowd_of_category[gt['category_id']] = gt_id
            continue
        stat[gt['category_id']].fn += 1

    for pred_id, pred in pred_segms.items():
        if pred_id in pred_matched:
            continue
        ignored = pairs.get((VOID, pred_id), 0)
        if pred['category_id'] in crowd_of_category:
            ignored += pairs.get((crowd_of_category[pred['category_id']], pred_id), 0)
        if ignored / pred_areas[pred_id] > IGNORE_FRACTION:
            continue
        stat[pred['category_id']].fp += 1
    return stat


def read_panoptic_png(path: str) -> np.ndarray:
    """(H, W) int64 segment ids of a COCO panoptic PNG (id = R + 256·G + 256²·B)."""
    with Image.open(path) as image:
        rgb = np.array(image.convert('RGB') if image.mode not in ('RGB', 'RGBA') else image)
    return rgb_to_panoptic_id(rgb[..., :3]).astype(np.int64)


def pq_results(stat: PQStat, categories: Dict[int, dict]) -> dict:
    """panopticapi's result dict: ``All`` / ``Things`` / ``Stuff`` averages and ``per_class``."""
    results = {}
    for name, isthing in (('All', None), ('Things', True), ('Stuff', False)):
        results[name], per_class = stat.pq_average(categories, isthing=isthing)
        if name == 'All':
            results['per_class'] = per_class
    return results


def format_pq_table(results: dict) -> str:
    """The PQ / SQ / RQ / N table panopticapi prints (percentages)."""
    lines = [f'{"":10s}| {"PQ":>5s}  {"SQ":>5s}  {"RQ":>5s} {"N":>5s}', '-' * 38]
    for name in ('All', 'Things', 'Stuff'):
        r = results[name]
        lines.append(f'{name:10s}| {100 * r["pq"]:5.1f}  {100 * r["sq"]:5.1f}  {100 * r["rq"]:5.1f} '
                     f'{r["n"]:5d}')
    return '\n'.join(lines)


def _matched_annotations(gt_json: dict, pred_json: dict) -> List[Tuple[dict, dict]]:
    """(ground truth, prediction) annotation pairs by image id, in ground-truth order."""
    predictions = {ann['image_id']: ann for ann in pred_json['annotations']}
    pairs = []
    for gt_ann in gt_json['annotations']:
        if gt_ann['image_id'] not in predictions:
            raise KeyError(f'No prediction for the image with id {gt_ann["image_id"]}.')
        pairs.append((gt_ann, predictions[gt_ann['image_id']]))
    return pairs


def pq_compute(gt_json_file: str, pred_json_file: str, gt_folder: Optional[str] = None,
               pred_folder: Optional[str] = None) -> dict:
    """Drop-in for ``panopticapi.evaluation.pq_compute``: same arguments, same result structure.

    Args:
        gt_json_file (str): ground-truth COCO panoptic JSON (``images``, ``annotations`` with
            ``segments_info``, ``categories`` with ``isthing``).
        pred_json_file (str): predictions in the same format (``annotations`` only are read).
        gt_folder (str, optional): ground-truth PNG folder. Default: ``gt_json_file`` without
            '.json'.
        pred_folder (str, optional): prediction PNG folder. Default: ``pred_json_file`` without
            '.json'.

    Returns:
        dict: ``{'All' | 'Things' | 'Stuff': {'pq', 'sq', 'rq', 'n'}, 'per_class': {category_id:
        {'pq', 'sq', 'rq'}}}``, scores as fractions in [0, 1].

    Raises:
        FileNotFoundError: a PNG folder does not exist.
        KeyError: an image without prediction, or PNG and JSON disagree (see
            :func:`pq_stat_single`).
    """
    with open(gt_json_file) as f:
        gt_json = json.load(f)
    with open(pred_json_file) as f:
        pred_json = json.load(f)
    gt_folder = gt_json_file.replace('.json', '') if gt_folder is None else gt_folder
    pred_folder = pred_json_file.replace('.json', '') if pred_folder is None else pred_folder
    for what, folder in (('ground-truth', gt_folder), ('prediction', pred_folder)):
        if not osp.isdir(folder):
            raise FileNotFoundError(f'Folder {folder} with {what} segmentations does not exist.')
    categories = {c['id']: c for c in gt_json['categories']}
    stat = PQStat()
    for gt_ann, pred_ann in _matched_annotations(gt_json, pred_json):
        stat += pq_stat_single(read_panoptic_png(osp.join(gt_folder, gt_ann['file_name'])),
                               gt_ann['segments_info'],
                               read_panoptic_png(osp.join(pred_folder, pred_ann['file_name'])),
                               pred_ann['segments_info'], categories, gt_ann['image_id'])
    results = pq_results(stat, categories)
    print_log('Panoptic quality:\n' + format_pq_table(results), logger='current')
    return results
