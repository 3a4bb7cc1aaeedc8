"""mmengine metric for anomaly localisation: image and pixel AUROC / AP / F1-max and two AUPROs."""
import json
import logging
import os.path as osp
from collections import OrderedDict, defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import all_gather_object, is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger, print_log
from mmengine.utils import mkdir_or_exist
from prettytable import PrettyTable

from ovseg.registry import METRICS
from .aupro import aupro_200_from_table, aupro_official_from_table, pro_table
from .binned import BinnedPixelTable
from .metrics import build_score_table, classification_metrics

METRIC_NAMES = ('image_AUROC', 'image_AP', 'image_F1max', 'pixel_AUROC', 'pixel_AP', 'pixel_F1max',
                'pixel_AUPRO_official', 'pixel_AUPRO_200thr')
PIXEL_MODES = ('exact', 'binned')


def _field(sample, *names):
    """First present entry of a data-sample dict (``to_dict`` of a SegDataSample), else None."""
    for name in names:
        if name in sample and sample[name] is not None:
            return sample[name]
    return None


def _array(value):
    if isinstance(value, dict):
        value = value['data']
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value)


def category_metrics(image_table, pixels, fpr_limit=0.3, num_thresholds=200):
    """The eight metrics (fractions) of one category from its image table and pixel table."""
    out = classification_metrics(image_table, 'image_')
    if pixels is None:
        out.update({name: float('nan') for name in METRIC_NAMES if name.startswith('pixel_')})
        return out
    out.update(classification_metrics(pixels, 'pixel_'))
    out['pixel_AUPRO_official'] = aupro_official_from_table(pixels, fpr_limit)
    out['pixel_AUPRO_200thr'] = aupro_200_from_table(pixels, fpr_limit, num_thresholds)
    return out


@METRICS.register_module()
class AnomalyMetric(BaseMetric):
    """Per-category anomaly detection and localisation metrics and their mean over categories.

    Reads, per test image, the model's ``anomaly_map`` ((1, H, W) at the original image size) and
    ``pred_score`` (the image score), the ground truth ``gt_sem_seg`` (nonzero = anomalous pixel) and
    the metainfo ``category`` ('all' when absent). The image label is ``anomaly_label`` from the metainfo
    when present, else whether the mask has an anomalous pixel.

    Metrics (reported in percent; keys ``<category>/<name>`` per category and ``<name>`` for the
    unweighted mean over categories, as in WinCLIP / AnomalyCLIP / MuSc tables):

    - ``image_AUROC``, ``image_AP``, ``image_F1max``: on the image scores (scikit-learn definitions).
    - ``pixel_AUROC``, ``pixel_AP``, ``pixel_F1max``: on all pixels of the category pooled.
    - ``pixel_AUPRO_official``: MVTec AD's official AUPRO (exact curve, area up to ``fpr_limit``
      divided by ``fpr_limit``; what anomalib reports).
    - ``pixel_AUPRO_200thr``: the 200-threshold AUPRO of AnomalyCLIP / MuSc (FPR < ``fpr_limit``,
      min-max rescaled), what most zero-shot papers report as "PRO".

    Memory: ``pixel_mode='exact'`` keeps every map as float32 plus a 1-bit mask (about 4.1 bytes per
    pixel) until the end, then builds each category's table in chunks of 4M pixels (about 30 bytes per
    pixel of a chunk, plus 28 bytes per distinct score). ``pixel_mode='binned'`` keeps only a
    ``num_bins`` histogram per category (1.5 MB at 65,536 bins, any number of images); every metric
    except the 200-threshold AUPRO is then exact for the maps quantised to the bins (see
    :mod:`ovseg.evaluation.anomaly.binned`). Binned histograms are summed over processes; padding
    samples a distributed sampler repeats are counted twice, so evaluate binned runs in one process
    for exact counts.

    Args:
        fpr_limit (float): FPR integration limit of both AUPROs. Default 0.3.
        pro_thresholds (int): thresholds of the 200-threshold AUPRO. Default 200.
        connectivity (int): ground-truth region connectivity for AUPRO, 8 or 4. Default 8.
        pixel_mode (str): 'exact' or 'binned'. Default 'exact'.
        num_bins (int): bins of the binned mode. Default 65536.
        score_range (tuple[float, float]): score range of the binned mode. Default (0.0, 1.0).
        eval_size (tuple[int, int], optional): (H, W) to which maps (bilinear) and masks (nearest) are
            resized before scoring (papers often score at 224-518 px); None scores at the original image
            size. Default None.
        json_name (str): per-category JSON file name. Default 'anomaly_metrics.json'.
        output_dir (str, optional): folder of the JSON; None uses the runner's log folder. Default None.
        collect_device (str): 'cpu' or 'gpu'. Default 'cpu'.
        prefix (str, optional): metric name prefix. Default None.
    """

    default_prefix = None

    def __init__(self, fpr_limit=0.3, pro_thresholds=200, connectivity=8, pixel_mode='exact',
                 num_bins=1 << 16, score_range=(0.0, 1.0), eval_size=None,
                 json_name='anomaly_metrics.json', output_dir=None, collect_device='cpu', prefix=None,
                 **kwargs):
        super().__init__(collect_device=collect_device, prefix=prefix, **kwargs)
        if pixel_mode not in PIXEL_MODES:
            raise ValueError(f'pixel_mode must be one of {PIXEL_MODES}, got {pixel_mode!r}')
        if not 0 < fpr_limit <= 1:
            raise ValueError(f'fpr_limit must be in (0, 1], got {fpr_limit}')
        self.fpr_limit, self.pro_thresholds, self.connectivity = float(fpr_limit), int(pro_thresholds), \
            int(connectivity)
        self.pixel_mode, self.num_bins, self.score_range = pixel_mode, int(num_bins), tuple(score_range)
        self.eval_size = tuple(eval_size) if eval_size is not None else None
        self.json_name, self.output_dir = json_name, output_dir
        self._binned = {}

    # ------------------------------------------------------------------------------------ process
    def _map_and_mask(self, sample):
        amap = _field(sample, 'anomaly_map')
        if amap is None:
            raise KeyError('AnomalyMetric needs `anomaly_map` in the model outputs (an anomaly segmentor).')
        gt = _field(sample, 'gt_sem_seg')
        if gt is None:
            raise KeyError(f"no ground-truth mask (gt_sem_seg) for {sample.get('img_path', 'an image')}: "
                           f'load it with LoadAnomalyMask')
        amap, mask = _array(amap).astype(np.float32), _array(gt)
        amap = torch.from_numpy(amap.reshape(amap.shape[-2:]))  # (1, H, W) or (H, W)
        mask = torch.from_numpy((mask.reshape(mask.shape[-2:]) != 0).astype(np.uint8))
        if mask.shape != amap.shape:
            raise ValueError(f'anomaly map {tuple(amap.shape)} and mask {tuple(mask.shape)} differ in '
                             f"size for {sample.get('img_path', 'an image')}")
        if self.eval_size is not None and tuple(amap.shape) != self.eval_size:
            amap = F.interpolate(amap[None, None], size=self.eval_size, mode='bilinear',
                                 align_corners=False)[0, 0]
            mask = F.interpolate(mask[None, None].float(), size=self.eval_size, mode='nearest')[0, 0]
        return amap.numpy(), mask.numpy() != 0

    def process(self, data_batch, data_samples):
        """Store (or histogram) each image's score, label, map and mask.

        Args:
            data_batch (dict): the dataloader batch (unused).
            data_samples (Sequence[dict]): model outputs with ``anomaly_map``, ``pred_score`` and
                ``gt_sem_seg``.
        """
        for sample in data_samples:
            category = str(_field(sample, 'category') or 'all')
            amap, mask = self._map_and_mask(sample)
            score = _field(sample, 'pred_score')
            score = float(_array(score).reshape(-1)[0]) if score is not None else float(amap.max())
            label = _field(sample, 'anomaly_label')
            label = bool(mask.any()) if label is None else bool(int(label))
            result = dict(category=category, score=score, label=label)
            if self.pixel_mode == 'exact':
                result.update(map=amap.astype(np.float32), mask=np.packbits(mask), shape=mask.shape)
            else:
                self._binned_table(category).update(amap, mask)
            self.results.append(result)

    def _binned_table(self, category):
        if category not in self._binned:
            self._binned[category] = BinnedPixelTable(self.num_bins, self.score_range, self.connectivity)
        return self._binned[category]

    # ------------------------------------------------------------------------------------ compute
    def evaluate(self, size):
        """Sum the binned histograms of every process, then evaluate as mmengine does."""
        if self.pixel_mode == 'binned':
            merged = {}
            for part in all_gather_object(self._binned):
                for category, table in part.items():
                    merged[category] = merged[category].merge(table) if category in merged else table
            self._binned = merged
        try:
            return super().evaluate(size)
        finally:
            self._binned = {}

    def _pixel_table(self, category, items):
        if self.pixel_mode == 'binned':
            table = self._binned.get(category)
            return table.to_table() if table is not None else None
        maps = [r['map'] for r in items]
        masks = [np.unpackbits(r['mask'], count=int(np.prod(r['shape']))).reshape(r['shape']) for r in items]
        return pro_table(maps, masks, self.connectivity)

    def compute_metrics(self, results):
        """Per-category metrics and their mean (percent).

        Args:
            results (list[dict]): the processed images of every process.

        Returns:
            dict[str, float]: ``<name>`` (mean over categories) and ``<category>/<name>``.
        """
        groups = defaultdict(list)
        for item in results:
            groups[item['category']].append(item)
        rows = OrderedDict()
        for category in sorted(groups):
            items = groups[category]
            images = build_score_table(np.asarray([r['score'] for r in items], dtype=np.float64),
                                       np.asarray([r['label'] for r in items]))
            values = category_metrics(images, self._pixel_table(category, items), self.fpr_limit,
                                      self.pro_thresholds)
            rows[category] = dict(num_images=len(items), num_anomalous=int(sum(r['label'] for r in items)),
                                  **{k: 100.0 * values[k] for k in METRIC_NAMES})
        mean = {k: float(np.mean([row[k] for row in rows.values()])) for k in METRIC_NAMES}
        metrics = OrderedDict(mean)
        for category, row in rows.items():
            metrics.update({f'{category}/{k}': row[k] for k in METRIC_NAMES})
        self._report(rows, mean, len(results))
        return metrics

    # ------------------------------------------------------------------------------------- report
    def _results_dir(self):
        if self.output_dir:
            return self.output_dir
        for handler in MMLogger.get_current_instance().handlers:
            if isinstance(handler, logging.FileHandler):
                return osp.dirname(handler.baseFilename)
        return None

    def _report(self, rows, mean, num_images):
        """Log the per-category table and write the JSON report."""
        logger = MMLogger.get_current_instance()
        table = PrettyTable(['category', 'images', 'anomalous'] + list(METRIC_NAMES))
        for category, row in list(rows.items()) + [('mean', dict(num_images=num_images, num_anomalous='',
                                                                 **mean))]:
            table.add_row([category, row['num_images'], row['num_anomalous']]
                          + [f'{row[k]:.2f}' for k in METRIC_NAMES])
        print_log(f'anomaly metrics per category (percent; AUPRO at FPR <= {self.fpr_limit:g}, '
                  f"'official' = MVTec exact curve, '200thr' = AnomalyCLIP/MuSc 200 thresholds; "
                  f'pixels: {self.pixel_mode}):\n' + table.get_string(), logger)
        folder = self._results_dir()
        if folder is None or not is_main_process():
            return
        mkdir_or_exist(folder)
        path = osp.join(folder, self.json_name)
        number = (lambda v: None if v is None or not np.isfinite(v) else float(v))
        report = dict(fpr_limit=self.fpr_limit, pro_thresholds=self.pro_thresholds,
                      connectivity=self.connectivity, pixel_mode=self.pixel_mode, eval_size=self.eval_size,
                      units='percent', num_images=num_images, mean={k: number(v) for k, v in mean.items()},
                      categories={c: {k: (number(v) if k in METRIC_NAMES else v) for k, v in row.items()}
                                  for c, row in rows.items()})
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=1)
        print_log(f'per-category anomaly metrics written to {path}', logger)
