"""AUPRO (area under the per-region-overlap curve up to a false-positive-rate limit), two variants.

``official`` — MVTec AD's evaluation scripts (``pro_curve_util.compute_pro`` + ``generic_util.trapezoid``):
the exact curve over every distinct score of the pooled pixels (ties merged into one point), PRO =
summed per-region coverage / number of regions (each region weighs the same, whatever its image), end
points (0, 0) and (1, 1) added, trapezoid area up to ``fpr_limit`` with the last piece linearly
interpolated, divided by ``fpr_limit``. anomalib's ``AUPRO`` computes the same number.

``200thr`` — the variant of AnomalyCLIP / MuSc (``cal_pro_score``): thresholds
``arange(min, max, (max - min) / 200)`` with min, max and step in the scores' dtype (numpy returns
float64 values), positive = score strictly above the threshold, keep the points with FPR < ``fpr_limit``
(strict), min-max rescale those FPRs to [0, 1] and take the trapezoid area in threshold order. It differs
from the official number (by up to ~4e-3 on the parity sets) and depends on the dtype of the maps (~2e-5
between float32 and float64).

Both read a :class:`ScoreTable` whose ``pro_weights`` hold 1 / region size on anomalous pixels, so they
run on pooled arrays, on per-image tables merged later, or on binned tables.
"""
import numpy as np
from scipy import ndimage

from .metrics import ScoreTable, build_score_table, merge_tables


def region_weights(mask, connectivity=8):
    """Per-pixel PRO weights of one ground-truth mask.

    Args:
        mask (np.ndarray): (H, W) nonzero = anomalous.
        connectivity (int): 8 (3x3 neighbourhood, as MVTec, anomalib and scikit-image's default) or 4.
            Default 8.

    Returns:
        tuple[np.ndarray, int]: (H, W) float64 weights (1 / size of the pixel's connected region on
        anomalous pixels, 0 elsewhere) and the number of regions.
    """
    if connectivity not in (4, 8):
        raise ValueError(f'connectivity must be 4 or 8, got {connectivity}')
    structure = np.ones((3, 3), dtype=int) if connectivity == 8 else None
    labeled, num = ndimage.label(np.asarray(mask) != 0, structure=structure)
    sizes = np.bincount(labeled.ravel())
    inv = np.zeros(len(sizes), dtype=np.float64)
    inv[1:] = 1.0 / sizes[1:]
    return inv[labeled], int(num)


def pro_table(maps, masks, connectivity=8, chunk_pixels=1 << 22):
    """Score table of pooled pixels with PRO weights (exact: one entry per distinct score).

    Args:
        maps (array-like | Sequence[np.ndarray]): (N, H, W) anomaly maps, or a list of (H_i, W_i) maps of
            different sizes (any float dtype, kept).
        masks (array-like | Sequence[np.ndarray]): the matching ground truth, nonzero = anomalous.
        connectivity (int): 8 or 4. Default 8.
        chunk_pixels (int): pixels per partial table; bounds the temporary memory of the sort to about
            30 bytes per pixel of a chunk. Default 4M.

    Returns:
        ScoreTable
    """
    if len(maps) != len(masks):
        raise ValueError(f'{len(maps)} maps but {len(masks)} masks')
    tables, batch = [], []

    def flush():
        weights, regions = zip(*(region_weights(mask, connectivity) for _, mask in batch))
        tables.append(build_score_table(np.concatenate([np.ravel(m) for m, _ in batch]),
                                        np.concatenate([np.ravel(k) != 0 for _, k in batch]),
                                        np.concatenate([w.ravel() for w in weights]), sum(regions)))
        batch.clear()

    for amap, mask in zip(maps, masks):
        amap, mask = np.asarray(amap), np.asarray(mask)
        if amap.shape != mask.shape or amap.ndim != 2:
            raise ValueError(f'each map and mask must be (H, W) of one size, got {amap.shape} and '
                             f'{mask.shape}')
        batch.append((amap, mask))
        if sum(m.size for m, _ in batch) >= chunk_pixels:
            flush()
    if batch:
        flush()
    return merge_tables(tables)


def pro_curve(table):
    """The official exact PRO curve: (fprs, pros) float64 with (0, 0) and (1, 1) end points.

    Like MVTec's ``compute_pro``, the FPRs are rounded to float32 and the PROs stay float64.
    """
    if table.num_negatives == 0 or table.num_regions == 0:
        raise ValueError('the PRO curve needs normal pixels and at least one anomalous region')
    # float32 FPRs as in MVTec's script (its cumsum is cast to float32 before dividing); float64 FPRs
    # would move the area by ~1e-9
    fprs = (np.cumsum(table.negatives).astype(np.float32) / table.num_negatives).astype(np.float32)
    pros = np.cumsum(table.pro_weights) / table.num_regions
    fprs = np.concatenate([[0.0], np.clip(fprs, 0.0, 1.0), [1.0]])
    pros = np.concatenate([[0.0], np.clip(pros, 0.0, 1.0), [1.0]])
    return fprs, pros


def trapezoid_to(x, y, x_max):
    """Trapezoid area under (x, y) for x <= x_max, the last piece interpolated linearly to x_max.

    ``x`` must be non-decreasing and reach beyond ``x_max`` (MVTec's ``generic_util.trapezoid``).
    """
    correction = 0.0
    if not np.any(x == x_max):
        ins = int(np.searchsorted(x, x_max, side='right'))
        if not 0 < ins < len(x):
            raise ValueError(f'x_max={x_max} lies outside the curve\'s x range')
        y_max = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_max + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def aupro_official_from_table(table, fpr_limit=0.3):
    """Official MVTec AUPRO of a table, normalised by ``fpr_limit`` (NaN without regions)."""
    if table.num_regions == 0 or table.num_negatives == 0:
        return float('nan')
    fprs, pros = pro_curve(table)
    return trapezoid_to(fprs, pros, fpr_limit) / fpr_limit


def threshold_grid(table, num_thresholds=200):
    """``np.arange(min, max, (max - min) / num_thresholds)`` as AnomalyCLIP / MuSc compute it.

    min, max and the step are numpy scalars of the scores' dtype (float32 maps: float32 step), as numpy >= 2
    computes ``(max - min) / 200`` (NEP 50; numpy 1.x promoted that step to float64, which moves the
    number by ~2e-5); numpy's ``arange`` then returns float64 values ``min + i * step``.
    """
    low, high = table.values[-1], table.values[0]
    step = (high - low) / table.values.dtype.type(num_thresholds)  # in the scores' dtype, any numpy
    if step == 0:
        return np.asarray([low])
    return np.arange(low, high, step)


def aupro_200_from_table(table, fpr_limit=0.3, num_thresholds=200):
    """AnomalyCLIP / MuSc AUPRO of a table (see the module docstring). NaN when undefined."""
    if table.num_regions == 0 or table.num_negatives == 0:
        return float('nan')
    thresholds = threshold_grid(table, num_thresholds)
    ascending = table.values[::-1]
    # number of distinct values strictly above each threshold (float64 comparison: exact for any
    # float scores, and what numpy does with the float64 grid np.arange returns)
    above = len(ascending) - np.searchsorted(ascending.astype(np.float64), thresholds, side='right')
    cum_neg = np.concatenate([[0], np.cumsum(table.negatives)])
    cum_pro = np.concatenate([[0.0], np.cumsum(table.pro_weights)])
    fprs = cum_neg[above] / table.num_negatives
    pros = cum_pro[above] / table.num_regions
    keep = fprs < fpr_limit
    fprs, pros = fprs[keep], pros[keep]
    if len(fprs) < 2 or fprs.max() == fprs.min():
        return float('nan')
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    # points run in threshold order (FPR decreasing); the area is taken with the sign that makes it >= 0
    return float(abs(np.sum(0.5 * (pros[1:] + pros[:-1]) * np.diff(fprs))))


def aupro_official(maps, masks, fpr_limit=0.3, connectivity=8):
    """Official MVTec AD AUPRO of (N, H, W) maps against (N, H, W) masks, pooled over all images."""
    return aupro_official_from_table(pro_table(maps, masks, connectivity), fpr_limit)


def aupro_200_thresholds(maps, masks, fpr_limit=0.3, num_thresholds=200, connectivity=8):
    """AnomalyCLIP / MuSc 200-threshold AUPRO of (N, H, W) maps (thresholds in the maps' dtype)."""
    return aupro_200_from_table(pro_table(maps, masks, connectivity), fpr_limit, num_thresholds)


__all__ = ['ScoreTable', 'aupro_200_from_table', 'aupro_200_thresholds', 'aupro_official',
           'aupro_official_from_table', 'pro_curve', 'pro_table', 'region_weights', 'threshold_grid',
           'trapezoid_to']
