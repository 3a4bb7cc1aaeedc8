"""Panoptic quality of model predictions against the dataset's panoptic ground truth."""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from prettytable import PrettyTable

from ovseg.registry import METRICS

from .classes import gt_segments, thing_flags
from .pq import PQStat, PQStatCat, format_pq_table, pq_results, pq_stat_single

SPLITS = (('All', ''), ('Things', '_th'), ('Stuff', '_st'))


@METRICS.register_module()
class OVPanopticMetric(BaseMetric):
    """PQ / SQ / RQ (all, things, stuff) as the COCO panoptic API computes them (see ``pq.py``).

    Each image contributes its per-category TP / FP / FN counts and matched IoU sums (computed in
    ``process``, so no prediction map is kept); mmengine collects them from every process and
    ``compute_metrics`` sums them, so the result does not depend on how images are split over
    processes (up to the floating-point order of the IoU sums).

    Inputs per data sample (``PackPanopticInputs`` and FC-CLIP's predictions provide them):

    - ``gt_panoptic_seg.data`` (1, H, W) segment ids (0 void) and metainfo ``segments_info``
      (``id``, ``label``, ``iscrowd``): ground-truth areas are counted in this map, which equal the
      JSON areas panopticapi uses when the map is loaded at full resolution (after ``Resize``).
    - ``pred_panoptic_seg.data`` (1, H, W) segment ids (0 = no segment) and its metainfo
      ``segments_info`` (``id``, ``category_id`` = class index).

    Results, in percent as detectron2's ``COCOPanopticEvaluator`` reports them: ``PQ``, ``SQ``,
    ``RQ`` and the ``_th`` (things) / ``_st`` (stuff) variants; a split with no counted category
    (e.g. stuff of a things-only dataset) is left out. The per-class table is logged.

    Args:
        thing_classes (Sequence[int | str], optional): thing classes (indices or names); None takes
            ``dataset_meta['thing_classes']``. Default None.
        collect_device (str): 'cpu' or 'gpu', device used to gather results. Default 'cpu'.
        prefix (str, optional): metric name prefix. Default None.
    """

    def __init__(self, thing_classes: Optional[Sequence[Union[int, str]]] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thing_classes = thing_classes

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Add one ``{category: (iou, tp, fp, fn)}`` dict per image to ``self.results``."""
        num_classes = len(self.dataset_meta['classes'])
        categories = {k: {} for k in range(num_classes)}
        for sample in data_samples:
            segments = gt_segments(sample, type(self).__name__)
            gt = [dict(id=s['id'], category_id=s['label'], iscrowd=int(s['iscrowd'])) for s in segments]
            pred = sample['pred_panoptic_seg']
            pred_segments = [dict(id=s['id'], category_id=s['category_id']) for s in pred['segments_info']]
            stat = pq_stat_single(sample['gt_panoptic_seg']['data'][0].cpu().numpy(), gt,
                                  pred['data'][0].cpu().numpy(), pred_segments, categories,
                                  sample.get('img_path'))
            self.results.append({k: (s.iou, s.tp, s.fp, s.fn) for k, s in stat.pq_per_cat.items()})

    def compute_metrics(self, results: List[Dict[int, tuple]]) -> Dict[str, float]:
        """Sum the per-image counts and average as panopticapi does."""
        classes = self.dataset_meta['classes']
        is_thing = thing_flags(classes, self.thing_classes, self.dataset_meta, type(self).__name__)
        categories = {k: dict(isthing=int(t)) for k, t in enumerate(is_thing)}
        stat = PQStat()
        for image in results:
            for category_id, (iou, tp, fp, fn) in image.items():
                stat.pq_per_cat[category_id] += PQStatCat(iou, tp, fp, fn)
        pq = pq_results(stat, categories)
        logger = MMLogger.get_current_instance()
        logger.info('Panoptic quality:\n' + format_pq_table(pq))
        logger.info('Per-class panoptic quality:\n' + self._class_table(pq, stat, classes, is_thing))
        metrics = {}
        for split, suffix in SPLITS:
            if pq[split]['n'] > 0:
                metrics.update({f'{key.upper()}{suffix}': round(100 * pq[split][key], 4)
                                for key in ('pq', 'sq', 'rq')})
        return metrics

    @staticmethod
    def _class_table(pq: dict, stat: PQStat, classes: Sequence[str], is_thing: np.ndarray) -> str:
        table = PrettyTable(['Class', 'Thing', 'PQ', 'SQ', 'RQ', 'TP', 'FP', 'FN'])
        for k, name in enumerate(classes):
            s, r = stat[k], pq['per_class'][k]
            if s.tp + s.fp + s.fn == 0:
                continue
            table.add_row([name, bool(is_thing[k]), *(f'{100 * r[key]:.2f}' for key in ('pq', 'sq', 'rq')),
                           s.tp, s.fp, s.fn])
        return table.get_string()
