"""Anomaly detection / localisation metrics: pure functions, ``AnomalyMetric`` and heat-map overlays.

Pure functions work on numpy arrays (or on :class:`ScoreTable` s, which add up over images, processes
or bins). Importing this package registers ``AnomalyMetric`` (METRICS) and ``AnomalyLocalVisualizer``
(VISUALIZERS, heat-map overlays for ``tools/test.py --show-dir``) into mmseg's registries.
"""
from .anomaly_metric import METRIC_NAMES, AnomalyMetric, category_metrics
from .aupro import (aupro_200_from_table, aupro_200_thresholds, aupro_official,
                    aupro_official_from_table, pro_curve, pro_table, region_weights, threshold_grid,
                    trapezoid_to)
from .binned import BinnedPixelTable
from .metrics import (ScoreTable, auroc, auroc_from_table, average_precision,
                      average_precision_from_table, build_score_table, classification_metrics, f1_max,
                      f1_max_from_table, merge_tables)
from .visualizer import AnomalyLocalVisualizer, anomaly_heatmap, mask_outline

__all__ = [
    'AnomalyLocalVisualizer', 'AnomalyMetric', 'BinnedPixelTable', 'METRIC_NAMES', 'ScoreTable',
    'anomaly_heatmap', 'aupro_200_from_table', 'aupro_200_thresholds', 'aupro_official',
    'aupro_official_from_table', 'auroc', 'auroc_from_table', 'average_precision',
    'average_precision_from_table', 'build_score_table', 'category_metrics', 'classification_metrics',
    'f1_max', 'f1_max_from_table', 'mask_outline', 'merge_tables', 'pro_curve', 'pro_table',
    'region_weights', 'threshold_grid', 'trapezoid_to',
]
