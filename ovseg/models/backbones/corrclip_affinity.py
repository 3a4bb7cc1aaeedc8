"""CorrCLIP's correlation restriction from mask proposals and a foundation model's features.

Reference: zdk258/CorrCLIP@103bc18 ``CorrCLIPv1`` (``open_clip/transformer.py`` ``VisionTransformer.forward``;
the ICCV 2025 method), one window at a time there, batched over windows here:

1. **Mask merging** (:func:`merge_regions`): the proposal label map on the foundation model's grid; when
   it has more than two values, the region means of the L2-normalised features (the smallest value, the
   unsegmented pixels, left out) are L2-normalised and clustered by DBSCAN (``eps`` 0.2, ``min_samples``
   1) on the distance ``max(sim) - sim``; every region but the smallest gets ``offset + cluster``.
2. **Scope reconstruction** (:func:`restricted_affinity`): ``sim = f fᵀ``; a pair is kept when both lie
   in the same merged region other than the smallest, or when one lies in the smallest region and
   ``sim`` exceeds the window's mean similarity; the rest is -inf before ``softmax(tau * sim)``.
3. **Mask-class tokens** (:func:`mask_class_layout`): the merged map on CLIP's token grid (nearest); one
   token per value (ascending), a copy of the class token placed before it, attending to the class
   token and its region's patches (not to itself); image tokens never attend to them.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ovseg.models.backbones.affinity import Affinity


def nearest_labels(labels, size):
    """(N, H, W) label maps -> (N, h, w) by nearest-neighbour sampling (``F.interpolate`` 'nearest')."""
    return F.interpolate(labels[:, None].float(), size=tuple(size), mode='nearest')[:, 0].round().long()


def merge_regions(labels, feats, eps=0.2, min_samples=1, offset=10000):
    """CorrCLIP's mask merging on one window (module docstring, step 1).

    Args:
        labels (Tensor): (h, w) integer label map on the feature grid.
        feats (Tensor): (h * w, C) L2-normalised features, row-major.
        eps (float): DBSCAN radius on the distance ``max(sim) - sim``. Default 0.2.
        min_samples (int): DBSCAN's ``min_samples``. Default 1.
        offset (int): merged regions get ``offset + cluster label``. Default 10000.

    Returns:
        tuple[Tensor, dict]: the merged (h, w) label map and the intermediates (``values``,
        ``similarity`` (R - 1, R - 1), ``clusters`` (R - 1,); empty when merging did not run).
    """
    values = torch.unique(labels)
    if values.numel() <= 2:
        return labels, {}
    from sklearn.cluster import DBSCAN
    flat = labels.flatten()
    regions = flat[None] == values[:, None]
    means = torch.stack([feats[mask].mean(dim=0) for mask in regions])
    instances = F.normalize(means, dim=1)[1:]
    sim = instances @ instances.T
    distance = (sim.max() - sim).cpu().numpy()
    clusters = DBSCAN(eps=eps, min_samples=min_samples, metric='precomputed').fit_predict(distance)
    merged = flat.clone()
    for region, cluster in zip(regions[1:], clusters):
        if cluster != -1:
            merged[region] = int(cluster) + offset
    info = dict(values=values, similarity=sim, clusters=torch.from_numpy(np.asarray(clusters)))
    return merged.view_as(labels), info


def scope_mask(sim, labels):
    """(B, L, L) similarities, (B, L) merged labels -> (B, L, L) bool: the pairs CorrCLIP keeps."""
    first = labels.amin(dim=1, keepdim=True)
    unseg = labels == first
    same = (labels[:, :, None] == labels[:, None, :]) & ~unseg[:, :, None]
    above = sim > sim.mean(dim=(1, 2), keepdim=True)
    return same | ((unseg[:, :, None] | unseg[:, None, :]) & above)


def restricted_affinity(feats, labels, grid, tau=4.0):
    """CorrCLIP's restricted correlation (module docstring, step 2).

    Args:
        feats (Tensor): (B, L, C) L2-normalised features on the ``grid``.
        labels (Tensor): (B, L) merged label maps.
        grid (tuple[int, int]): (h, w), h * w = L.
        tau (float): softmax temperature multiplier. Default 4.

    Returns:
        Affinity: (B, L, L) weights on ``grid`` (CLIP's values are resized to it).
    """
    sim = feats @ feats.transpose(1, 2)
    keep = scope_mask(sim, labels)
    weights = (sim.masked_fill(~keep, float('-inf')) * tau).softmax(dim=-1)
    return Affinity(weights=weights, grid=tuple(grid), value_grid=tuple(grid))


@dataclass
class MaskClassLayout:
    """Mask-class tokens of a batch of windows (module docstring, step 3).

    Attributes:
        num_tokens (int): mask-class tokens per window (padded to the batch's largest count).
        attn_mask (Tensor): (B, 1, N, N) additive mask (0 allowed, -inf blocked) of the sequence
            [mask-class tokens, class token, patches], N = num_tokens + 1 + h * w.
        expand (Tensor): (B, num_tokens, L) float 0/1: which feature-grid locations each token's region
            covers (its token-grid region resized by nearest to the feature grid); 0 for padding tokens.
        counts (Tensor): (B,) real mask-class tokens of each window.
    """

    num_tokens: int
    attn_mask: torch.Tensor
    expand: torch.Tensor
    counts: torch.Tensor


def mask_class_layout(labels, token_grid, feat_grid):
    """(B, h_f, w_f) merged label maps -> :class:`MaskClassLayout` on the CLIP token grid.

    Windows with fewer values get padding tokens that attend to the class token only and are never read.
    """
    tok = nearest_labels(labels, token_grid).flatten(1)
    regions = [t[None] == torch.unique(t)[:, None] for t in tok]
    count = max(r.shape[0] for r in regions)
    b, t = tok.shape
    n = count + 1 + t
    allowed = torch.zeros(b, n, n, dtype=torch.bool, device=labels.device)
    allowed[:, count:, count:] = True
    allowed[:, :count, count] = True
    padded = torch.zeros(b, count, t, dtype=torch.bool, device=labels.device)
    for i, r in enumerate(regions):
        padded[i, :r.shape[0]] = r
    allowed[:, :count, count + 1:] = padded
    expand = F.interpolate(padded.view(b * count, 1, *token_grid).float(), size=tuple(feat_grid), mode='nearest')
    mask = torch.zeros(b, 1, n, n, device=labels.device).masked_fill(~allowed[:, None], float('-inf'))
    return MaskClassLayout(num_tokens=count, attn_mask=mask, expand=expand.view(b, count, -1),
                           counts=torch.tensor([r.shape[0] for r in regions]))
