"""Semantic segmentation IoU: mean convention, seen/unseen splits and a per-class JSON report."""
import json
import logging
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import MMLogger, print_log
from mmengine.utils import mkdir_or_exist
from mmseg.evaluation import IoUMetric
from PIL import Image
from prettytable import PrettyTable

from ovseg.datasets.transforms.loading import check_label_values
from ovseg.registry import METRICS

CONVENTIONS = ('mmseg', 'detectron2')
ClassSpec = Optional[Sequence[Union[int, str]]]


def _nanmean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (without numpy's warning) when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float('nan')


def _json_number(value: float) -> Optional[float]:
    """A float for JSON: NaN (undefined score) becomes null."""
    return None if np.isnan(value) else float(value)


@METRICS.register_module()
class OVIoUMetric(IoUMetric):
    """mmseg's IoU metric with exact integer counts, a detectron2 option and seen/unseen splits.

    Counts are int64 pixel histograms (``torch.bincount``), so any split of the images over
    processes sums to the same totals: 2-process evaluation equals 1-process evaluation exactly.

    Conventions for a class that has **no ground-truth pixel** in the whole evaluation set:

    - ``'mmseg'`` (mmseg ``IoUMetric``): if it is predicted somewhere, its IoU is 0 and counts in
      mIoU; if it is never predicted (union 0) its IoU is NaN and skipped.
    - ``'detectron2'`` (detectron2 ``SemSegEvaluator``, used by FC-CLIP's published numbers): its
      IoU is NaN and skipped whether or not it is predicted. detectron2 scores class c only where
      ``pos_gt[c] > 0`` (``iou_valid = (pos_gt > 0) & (union > 0)``; mIoU and mAcc average the valid
      classes). Here every per-class score (IoU, Acc, Dice, Precision, Recall, Fscore) of such a
      class is NaN. Classes with ground truth score identically under both conventions, as does
      aAcc.

    In both, pixels whose label is ``ignore_index`` count nowhere (neither as prediction nor as
    label), and a predicted value outside 0..K-1 credits no class. A label value outside 0..K-1 that
    is not the ignore index raises ``ValueError`` naming the annotation file: it would otherwise
    vanish silently.

    With ``seen_classes`` / ``unseen_classes`` (names or indices; either defaults to the complement
    of the other) the result adds ``mIoU_seen``, ``mIoU_unseen`` and their harmonic mean ``hIoU``
    (2·s·u / (s + u)). The per-class table is logged and written as JSON (``json_name``) into
    ``output_dir`` or, when that is None, the runner's log folder (``work_dir/<timestamp>``, found
    through the current logger's file handler).

    Args:
        ignore_index (int): label value ignored; 65535 for ADE-847 and PC-459. Default 255.
        iou_metrics (Sequence[str]): any of 'mIoU', 'mDice', 'mFscore'. Default ('mIoU',).
        convention (str): 'mmseg' or 'detectron2'. Default 'mmseg'.
        seen_classes (Sequence[int | str], optional): classes seen in training. Default None.
        unseen_classes (Sequence[int | str], optional): classes unseen in training. Default None.
        nan_to_num (int, optional): value replacing NaN per-class scores before averaging (as in
            mmseg, replaced classes then count in the mean). Default None.
        beta (int): recall weight of the F-score. Default 1.
        json_name (str): per-class JSON file name. Default 'per_class_iou.json'.
        collect_device (str): 'cpu' or 'gpu', device used to gather results. Default 'cpu'.
        output_dir (str, optional): folder for the JSON and, as in mmseg, one prediction PNG per
            image (16-bit when there are more than 256 classes). Default None.
        format_only (bool): only write predictions, compute nothing. Default False.
        prefix (str, optional): metric name prefix. Default None.
    """

    def __init__(self, ignore_index: int = 255, iou_metrics: Sequence[str] = ('mIoU', ),
                 convention: str = 'mmseg', seen_classes: ClassSpec = None,
                 unseen_classes: ClassSpec = None, nan_to_num: Optional[int] = None, beta: int = 1,
                 json_name: str = 'per_class_iou.json', collect_device: str = 'cpu',
                 output_dir: Optional[str] = None, format_only: bool = False,
                 prefix: Optional[str] = None, **kwargs) -> None:
        super().__init__(ignore_index=ignore_index, iou_metrics=list(iou_metrics),
                         nan_to_num=nan_to_num, beta=beta, collect_device=collect_device,
                         output_dir=output_dir, format_only=format_only, prefix=prefix, **kwargs)
        if convention not in CONVENTIONS:
            raise ValueError(f'convention must be one of {CONVENTIONS}, got {convention!r}')
        self.convention = convention
        self.seen_classes = seen_classes
        self.unseen_classes = unseen_classes
        self.json_name = json_name

    @staticmethod
    def count_areas(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int,
                    source: str = '<unknown>') -> np.ndarray:
        """Per-class pixel counts of one image.

        Args:
            pred (torch.Tensor): (H, W) predicted labels.
            label (torch.Tensor): (H, W) ground-truth labels.
            num_classes (int): number of classes K.
            ignore_index (int): ignored label value.
            source (str): annotation file quoted in errors.

        Returns:
            np.ndarray: (4, K) int64 rows: intersection, union, predicted, ground truth.

        Raises:
            ValueError: a label outside 0..K-1 that is not ``ignore_index``.
        """
        pred, label = pred.long().flatten(), label.long().flatten().to(pred.device)
        keep = label != ignore_index
        if not bool(((label >= 0) & (label < num_classes) | ~keep).all()):
            check_label_values(label.cpu().numpy(), num_classes, ignore_index, source)
        pred, label = pred[keep], label[keep]
        pred_in_range = pred[(pred >= 0) & (pred < num_classes)]
        area_pred = torch.bincount(pred_in_range, minlength=num_classes)
        area_label = torch.bincount(label, minlength=num_classes)
        area_intersect = torch.bincount(label[pred == label], minlength=num_classes)
        area_union = area_pred + area_label - area_intersect
        return torch.stack([area_intersect, area_union, area_pred, area_label]).cpu().numpy()

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Count one batch; optionally write its predictions.

        Args:
            data_batch (dict): the dataloader batch (unused).
            data_samples (Sequence[dict]): model outputs with ``pred_sem_seg`` and ``gt_sem_seg``.
        """
        num_classes = len(self.dataset_meta['classes'])
        for sample in data_samples:
            pred = sample['pred_sem_seg']['data'].squeeze()
            if not self.format_only:
                source = sample.get('seg_map_path') or sample.get('img_path', '<unknown>')
                self.results.append(self.count_areas(
                    pred, sample['gt_sem_seg']['data'].squeeze(), num_classes, self.ignore_index,
                    source))
            if self.output_dir is not None:
                self._save_prediction(sample, pred, num_classes)

    def _save_prediction(self, sample: dict, pred: torch.Tensor, num_classes: int) -> None:
        """Write ``pred`` as a PNG named after the image; 16-bit where uint8 would wrap labels."""
        basename = osp.splitext(osp.basename(sample['img_path']))[0]
        mask = pred.cpu().numpy()
        if sample.get('reduce_zero_label', False):
            mask = mask + 1  # back to the file's label values, as mmseg does
        dtype = np.uint8 if num_classes <= 255 else np.uint16
        Image.fromarray(mask.astype(dtype)).save(osp.join(self.output_dir, f'{basename}.png'))

    def _class_indices(self, spec: ClassSpec, classes: Sequence[str], what: str) -> List[int]:
        """Class names or indices -> sorted indices, with a clear error for unknown entries."""
        index_of = {name: k for k, name in enumerate(classes)}
        indices = set()
        for item in spec:
            k = index_of.get(item) if isinstance(item, str) else int(item)
            if k is None or not 0 <= k < len(classes):
                raise ValueError(
                    f'{what}: {item!r} is not one of the {len(classes)} dataset classes')
            indices.add(k)
        return sorted(indices)

    def _split_masks(self, classes: Sequence[str]) -> Optional[Dict[str, np.ndarray]]:
        """Boolean class masks {'seen': ..., 'unseen': ...}, or None without a split."""
        if self.seen_classes is None and self.unseen_classes is None:
            return None
        masks = {}
        for name, spec in (('seen', self.seen_classes), ('unseen', self.unseen_classes)):
            if spec is not None:
                masks[name] = np.zeros(len(classes), dtype=bool)
                masks[name][self._class_indices(spec, classes, f'{name}_classes')] = True
        if 'seen' not in masks:
            masks['seen'] = ~masks['unseen']
        if 'unseen' not in masks:
            masks['unseen'] = ~masks['seen']
        if (masks['seen'] & masks['unseen']).any():
            both = [classes[k] for k in np.flatnonzero(masks['seen'] & masks['unseen'])]
            raise ValueError(f'classes {both[:5]} are both seen and unseen')
        return masks

    def per_class_scores(self, totals: np.ndarray) -> Dict[str, np.ndarray]:
        """Per-class scores of summed counts under ``self.convention``.

        Args:
            totals (np.ndarray): (4, K) int64 summed counts (intersection, union, predicted, label).

        Returns:
            dict[str, np.ndarray]: 'aAcc' (scalar) and (K,) float64 arrays ('IoU', 'Acc', ...), NaN
            where undefined or skipped.
        """
        intersect, union, pred, label = (torch.from_numpy(t).double() for t in totals)
        scores = self.total_area_to_metrics(intersect, union, pred, label, self.metrics, None,
                                            self.beta)
        scores = {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}
        if self.convention == 'detectron2':
            for key, value in scores.items():
                if key != 'aAcc':
                    value[totals[3] == 0] = np.nan
        if self.nan_to_num is not None:
            scores = {k: np.nan_to_num(v, nan=self.nan_to_num) for k, v in scores.items()}
        return scores

    def _summary(self, scores: Dict[str, np.ndarray], splits) -> Dict[str, float]:
        """mmseg-style summary (percent, 2 decimals) plus seen / unseen / harmonic mIoU."""
        metrics = OrderedDict(aAcc=round(float(scores['aAcc']) * 100, 2))
        for key, value in scores.items():
            if key != 'aAcc':
                metrics['m' + key] = round(_nanmean(value) * 100, 2)
        if splits is not None:
            seen, unseen = (_nanmean(scores['IoU'][splits[k]]) for k in ('seen', 'unseen'))
            harmonic = 2 * seen * unseen / (seen + unseen) if seen + unseen > 0 else 0.0
            metrics.update(mIoU_seen=round(seen * 100, 2), mIoU_unseen=round(unseen * 100, 2),
                           hIoU=round(harmonic * 100, 2))
        return metrics

    def _class_rows(self, scores, totals, classes, splits) -> List[dict]:
        """One dict per class: name, split, percent scores (None if undefined) and pixel counts."""
        rows = []
        for k, name in enumerate(classes):
            row = dict(index=k, name=name)
            if splits is not None:
                row['split'] = 'seen' if splits['seen'][k] else 'unseen'
            row.update({key: _json_number(round(value[k] * 100, 2))
                        for key, value in scores.items() if key != 'aAcc'})
            row.update(gt_pixels=int(totals[3, k]), pred_pixels=int(totals[2, k]),
                       intersection_pixels=int(totals[0, k]))
            rows.append(row)
        return rows

    def _results_dir(self) -> Optional[str]:
        """``output_dir``, else the folder of the current logger's log file (the run's log dir)."""
        if self.output_dir:
            return self.output_dir
        for handler in MMLogger.get_current_instance().handlers:
            if isinstance(handler, logging.FileHandler):
                return osp.dirname(handler.baseFilename)
        return None

    def _report(self, rows: List[dict], metrics: Dict[str, float], num_images: int) -> None:
        """Log the per-class table and write the JSON report."""
        logger = MMLogger.get_current_instance()
        table = PrettyTable()
        for key in rows[0]:
            if key not in ('index', 'intersection_pixels'):
                table.add_column(key, [row[key] for row in rows])
        print_log(f'per class results ({self.convention} convention):', logger)
        print_log('\n' + table.get_string(), logger=logger)
        folder = self._results_dir()
        if folder is None:
            return
        mkdir_or_exist(folder)
        path = osp.join(folder, self.json_name)
        summary = {key: _json_number(value) for key, value in metrics.items()}
        report = dict(convention=self.convention, ignore_index=self.ignore_index,
                      num_images=num_images, metrics=summary, classes=rows)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=1)
        print_log(f'per class results written to {path}', logger)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Sum the per-image counts and compute the metrics.

        Args:
            results (list[np.ndarray]): (4, K) counts per image, from every process.

        Returns:
            dict[str, float]: aAcc, mIoU (and mAcc, mDice, ... as configured), plus mIoU_seen,
            mIoU_unseen and hIoU with a class split; percent with two decimals.
        """
        if self.format_only:
            print_log(f'results are saved to {self.output_dir}', MMLogger.get_current_instance())
            return OrderedDict()
        classes = self.dataset_meta['classes']
        totals = np.sum(np.stack(results), axis=0, dtype=np.int64)
        splits = self._split_masks(classes)
        scores = self.per_class_scores(totals)
        metrics = self._summary(scores, splits)
        self._report(self._class_rows(scores, totals, classes, splits), metrics, len(results))
        return metrics
