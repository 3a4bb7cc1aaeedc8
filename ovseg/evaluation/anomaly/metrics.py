"""Exact AUROC, average precision and F1-max from score tables (no scikit-learn needed).

Every metric here is a function of a :class:`ScoreTable`: the distinct scores in decreasing order with,
per score, the number of negative and positive samples (and, for AUPRO, the summed per-region weights).
Ties are merged into one curve point, exactly as scikit-learn's ``roc_curve`` /
``precision_recall_curve`` do, so the values equal scikit-learn's to float64 rounding (about 1e-15).
Tables of disjoint sample sets add up (:func:`merge_tables`), which is what makes per-image or
per-process accumulation possible.
"""
from dataclasses import dataclass

import numpy as np


@dataclass
class ScoreTable:
    """Sample counts per distinct score.

    Attributes:
        values (np.ndarray): (U,) distinct scores in decreasing order, in the dtype of the input scores
            (the 200-threshold AUPRO compares thresholds in that dtype, as the reference does).
        negatives (np.ndarray): (U,) int64 normal samples (pixels or images) with that score.
        positives (np.ndarray): (U,) int64 anomalous samples with that score.
        pro_weights (np.ndarray): (U,) float64 sum over the anomalous pixels with that score of
            1 / (size of the pixel's ground-truth region); zeros when regions are not tracked.
        num_regions (int): ground-truth regions behind ``pro_weights``. Default 0.
    """

    values: np.ndarray
    negatives: np.ndarray
    positives: np.ndarray
    pro_weights: np.ndarray
    num_regions: int = 0

    @property
    def num_negatives(self):
        return int(self.negatives.sum())

    @property
    def num_positives(self):
        return int(self.positives.sum())


def _counts_by_value(values, inverse, labels, weights):
    """Ascending unique values + inverse -> table in decreasing order."""
    size = len(values)
    positives = np.bincount(inverse[labels], minlength=size).astype(np.int64)
    negatives = np.bincount(inverse, minlength=size).astype(np.int64) - positives
    pro = (np.bincount(inverse, weights=weights, minlength=size) if weights is not None
           else np.zeros(size, dtype=np.float64))
    return values[::-1], negatives[::-1], positives[::-1], pro[::-1]


def build_score_table(scores, labels, pro_weights=None, num_regions=0):
    """Score table of one set of samples.

    Args:
        scores (array-like): (M,) or any shape; scores (higher = more anomalous). Float dtypes are kept.
        labels (array-like): same shape; nonzero = anomalous.
        pro_weights (array-like, optional): same shape, float64 per-sample PRO weight (1 / region size on
            anomalous pixels, 0 elsewhere). Default None.
        num_regions (int): ground-truth regions behind ``pro_weights``. Default 0.

    Returns:
        ScoreTable: its arrays are new (the inputs are not kept).

    Raises:
        ValueError: shapes differ or a score is NaN.
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f'scores and labels differ in size: {scores.size} vs {labels.size}')
    if scores.dtype.kind == 'f' and np.isnan(scores).any():
        raise ValueError('anomaly scores contain NaN; metrics are undefined')
    weights = None if pro_weights is None else np.asarray(pro_weights, dtype=np.float64).ravel()
    values, inverse = np.unique(scores, return_inverse=True)
    return ScoreTable(*_counts_by_value(values, inverse.ravel(), labels, weights), int(num_regions))


def merge_tables(tables):
    """Sum score tables of disjoint sample sets into one (same result as one table of all samples)."""
    tables = [t for t in tables if len(t.values)]
    if not tables:
        raise ValueError('no samples to evaluate')
    if len(tables) == 1:
        return tables[0]
    values, inverse = np.unique(np.concatenate([t.values for t in tables]), return_inverse=True)
    size = len(values)

    def add(name, dtype):
        return np.bincount(inverse, weights=np.concatenate([getattr(t, name) for t in tables]),
                           minlength=size).astype(dtype)[::-1]
    # float64 bincount sums the int64 counts exactly below 2**53 samples
    return ScoreTable(values[::-1], add('negatives', np.int64), add('positives', np.int64),
                      add('pro_weights', np.float64), sum(t.num_regions for t in tables))


def _rates(table):
    """Cumulative true/false positives at each distinct threshold (positive = score >= threshold)."""
    return np.cumsum(table.positives), np.cumsum(table.negatives)


def auroc_from_table(table):
    """Area under the ROC curve (trapezoid rule, ties merged). NaN without both classes."""
    pos, neg = table.num_positives, table.num_negatives
    if pos == 0 or neg == 0:
        return float('nan')
    tps, fps = _rates(table)
    tpr = np.concatenate([[0.0], tps / pos])
    fpr = np.concatenate([[0.0], fps / neg])
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2))


def _precision_recall(table):
    tps, fps = _rates(table)
    precision = tps / (tps + fps)
    recall = tps / table.num_positives
    return precision, recall


def average_precision_from_table(table):
    """Average precision: sum over thresholds of (R_n - R_(n-1)) * P_n (scikit-learn's definition)."""
    if table.num_positives == 0:
        return float('nan')
    precision, recall = _precision_recall(table)
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def f1_max_from_table(table):
    """Maximum F1 over the thresholds of the precision-recall curve.

    Returns:
        tuple[float, float]: (F1-max, threshold) with positive = score >= threshold; among equal maxima
        the lowest threshold (the first in scikit-learn's increasing order). (NaN, NaN) without positives.
    """
    if table.num_positives == 0:
        return float('nan'), float('nan')
    precision, recall = _precision_recall(table)
    with np.errstate(invalid='ignore', divide='ignore'):
        f1 = 2 * precision * recall / (precision + recall)
    f1 = np.where(np.isfinite(f1), f1, -np.inf)
    best = len(f1) - 1 - int(np.argmax(f1[::-1]))
    return float(f1[best]), float(table.values[best])


def auroc(labels, scores):
    """Area under the ROC curve of ``scores`` against binary ``labels`` (any shapes, flattened)."""
    return auroc_from_table(build_score_table(scores, labels))


def average_precision(labels, scores):
    """Average precision of ``scores`` against binary ``labels`` (any shapes, flattened)."""
    return average_precision_from_table(build_score_table(scores, labels))


def f1_max(labels, scores, return_threshold=False):
    """Maximum F1 over all thresholds; with ``return_threshold`` also the threshold reaching it."""
    value, threshold = f1_max_from_table(build_score_table(scores, labels))
    return (value, threshold) if return_threshold else value


def classification_metrics(table, prefix):
    """``{prefix}AUROC``, ``{prefix}AP``, ``{prefix}F1max`` of one table (fractions in [0, 1])."""
    return {f'{prefix}AUROC': auroc_from_table(table),
            f'{prefix}AP': average_precision_from_table(table),
            f'{prefix}F1max': f1_max_from_table(table)[0]}
