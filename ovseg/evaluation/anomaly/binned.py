"""Constant-memory pixel statistics: counts per score bin, accumulated image by image.

``BinnedPixelTable`` holds three ``num_bins`` arrays (normal pixels, anomalous pixels, PRO weights) per
category, whatever the number of images (65,536 bins: 1.5 MB). Every metric computed from it is the
exact metric of the maps **quantised to the bins** (each score replaced by its bin's lower edge; scores
outside ``score_range`` fall into the first / last bin): AUROC, AP, F1-max and the official AUPRO change
by at most the mass of pixels that share a bin only after quantisation. The 200-threshold AUPRO places
its thresholds between the quantised values, so it is approximate (error of the order of the bin width
relative to the score range). Use exact tables (:func:`~ovseg.evaluation.anomaly.aupro.pro_table`)
when the maps fit in memory.
"""
import numpy as np

from .aupro import region_weights
from .metrics import ScoreTable


class BinnedPixelTable:
    """Additive histogram of pixel scores with PRO weights.

    Args:
        num_bins (int): uniform bins over ``score_range``. Default 65536.
        score_range (tuple[float, float]): (low, high) of the scores. Default (0.0, 1.0).
        connectivity (int): ground-truth region connectivity, 8 or 4. Default 8.
    """

    def __init__(self, num_bins=1 << 16, score_range=(0.0, 1.0), connectivity=8):
        low, high = (float(v) for v in score_range)
        if not high > low or num_bins < 2:
            raise ValueError(f'need score_range low < high and num_bins >= 2, got {score_range}, {num_bins}')
        self.num_bins, self.low, self.high, self.connectivity = int(num_bins), low, high, connectivity
        self.negatives = np.zeros(self.num_bins, dtype=np.int64)
        self.positives = np.zeros(self.num_bins, dtype=np.int64)
        self.pro_weights = np.zeros(self.num_bins, dtype=np.float64)
        self.num_regions = 0

    def bin_index(self, scores):
        """(...) scores -> (...) int64 bin indices in [0, num_bins)."""
        scaled = (np.asarray(scores, dtype=np.float64) - self.low) * (self.num_bins / (self.high - self.low))
        return np.clip(np.floor(scaled), 0, self.num_bins - 1).astype(np.int64)

    def update(self, amap, mask):
        """Add one (H, W) map and its (H, W) mask (nonzero = anomalous)."""
        amap, mask = np.asarray(amap), np.asarray(mask) != 0
        if amap.shape != mask.shape:
            raise ValueError(f'map {amap.shape} and mask {mask.shape} differ in shape')
        if np.isnan(amap).any():
            raise ValueError('anomaly map contains NaN; metrics are undefined')
        idx = self.bin_index(amap).ravel()
        weights, regions = region_weights(mask, self.connectivity)
        flat = mask.ravel()
        self.positives += np.bincount(idx[flat], minlength=self.num_bins)
        self.negatives += np.bincount(idx[~flat], minlength=self.num_bins)
        self.pro_weights += np.bincount(idx, weights=weights.ravel(), minlength=self.num_bins)
        self.num_regions += regions

    def merge(self, other):
        """Add another table with the same bins (e.g. from another process)."""
        if (other.num_bins, other.low, other.high) != (self.num_bins, self.low, self.high):
            raise ValueError('binned tables with different bins cannot be merged')
        self.negatives += other.negatives
        self.positives += other.positives
        self.pro_weights += other.pro_weights
        self.num_regions += other.num_regions
        return self

    def to_table(self):
        """The non-empty bins as a :class:`ScoreTable` (values = bin lower edges, decreasing)."""
        used = np.flatnonzero(self.negatives + self.positives)[::-1]
        edges = self.low + used * ((self.high - self.low) / self.num_bins)
        return ScoreTable(edges.astype(np.float64), self.negatives[used].copy(), self.positives[used].copy(),
                          self.pro_weights[used].copy(), self.num_regions)
