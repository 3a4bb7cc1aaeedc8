"""Affinities between patch tokens: the fixed neighbourhood prior and external affinities.

An external affinity is what :class:`.attention_strategies.ExternalAffinityAttention` reads from the
walk context: attention weights from another network's features (DINO / DINOv2 / SAM keys) or from mask
proposals, built with the helpers here and handed to the backbone as ``external={'affinity': aff}``.
"""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F


@dataclass
class Affinity:
    """Attention weights given to a tower block from outside.

    Attributes:
        weights (Tensor): (B, M, L) or (B, heads, M, L); row m weighs the L value tokens for output m.
        grid (tuple[int, int]): (h', w') with h' * w' = M, the grid of the output tokens.
        value_grid (tuple[int, int], optional): (h, w) with h * w = L; the tower's patch values are resized
            to it (bilinear) first. None: the tower grid.
    """

    weights: torch.Tensor
    grid: tuple
    value_grid: Optional[tuple] = None


def gaussian_neighbourhood(grid, std, num_prefix=1, dtype=torch.float32, device=None):
    """NACLIP's ω: (P + h * w, P + h * w) with exp(-|p - p'|² / (2 std²)) between patches, 0 for prefix rows
    and columns (P = ``num_prefix``)."""
    h, w = grid
    rows = torch.arange(h, dtype=torch.float32, device=device).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float32, device=device).repeat(h)
    dist2 = (rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2
    omega = torch.zeros(num_prefix + h * w, num_prefix + h * w, dtype=torch.float32, device=device)
    omega[num_prefix:, num_prefix:] = torch.exp(-dist2 / (2.0 * std * std))
    return omega.to(dtype)


def same_mask(masks):
    """(B, K, h, w) mask proposals -> (B, L, L) bool: True where two locations share a proposal."""
    m = masks.flatten(2).float()
    return (m.transpose(1, 2) @ m) > 0


def affinity_from_features(feats, scale=1.0, shift=0.0, min_value=None, restrict=None, mean_over='image'):
    """Softmax-normalised cosine affinity of another network's features.

    ``S = f̂ᵀ f̂`` (features L2-normalised over channels); logits ``scale * (S - shift * mean(S))``;
    entries below ``min_value`` and outside ``restrict`` are excluded (-inf) before the row softmax.

    Args:
        feats (Tensor): (B, C, h, w) features (e.g. DINO keys on their own grid).
        scale (float): multiplier of the shifted similarities. Default 1.
        shift (float): multiple of the mean similarity subtracted. Default 0.
        min_value (float, optional): logits below it are excluded. Default None.
        restrict (Tensor, optional): (B, L, L) bool, e.g. :func:`same_mask` of proposals; False excluded.
        mean_over (str): the mean of ``shift`` over each image's entries ('image') or over the whole
            batch ('batch', e.g. windows of one image). Default 'image'.

    Returns:
        Affinity: (B, L, L) weights on the features' grid (value grid: the same). A row with every entry
        excluded is NaN, as in the references; choose thresholds that keep the diagonal.
    """
    b, _, h, w = feats.shape
    f = F.normalize(feats.flatten(2).float(), dim=1)
    sim = f.transpose(1, 2) @ f
    if shift:
        dims = (0, 1, 2) if mean_over == 'batch' else (1, 2)
        sim = sim - shift * sim.mean(dim=dims, keepdim=True)
    logits = sim * scale
    if min_value is not None:
        logits = logits.masked_fill(logits < min_value, float('-inf'))
    if restrict is not None:
        logits = logits.masked_fill(~restrict.bool(), float('-inf'))
    return Affinity(weights=logits.softmax(dim=-1), grid=(h, w), value_grid=(h, w))


def affinity_from_masks(masks):
    """Uniform attention within proposals: w(p, q) ∝ 1 when p and q share a mask (row-normalised).

    A location covered by no proposal attends to itself only.

    Args:
        masks (Tensor): (B, K, h, w) binary masks on the tower grid.

    Returns:
        Affinity: (B, L, L) weights on the mask grid.
    """
    b, _, h, w = masks.shape
    share = same_mask(masks).float()
    eye = torch.eye(h * w, device=masks.device).expand(b, -1, -1)
    share = torch.where(share.sum(dim=-1, keepdim=True) > 0, share, eye)
    return Affinity(weights=share / share.sum(dim=-1, keepdim=True), grid=(h, w), value_grid=(h, w))
