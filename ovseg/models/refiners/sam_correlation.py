"""Trident's global aggregation: dense features mixed by correlations from SAM's image encoder.

SAM's last encoder block sees the whole image at high resolution; Trident (Shi et al., ICCV 2025,
``YuHengsss/Trident`` ``get_sam_feat`` / ``get_sam_sim`` / ``guidance_attn``) turns its attention into
aggregation weights over the image's valid SAM grid (sh, sw) (the cells covering the image, not SAM's
padding):

1. per head h, the cosine ``cos_h(m, n)`` of the last block's values of cells m and n;
2. per query cell m a threshold ``t_m = min(cos_fac * mean_{h, n} cos_h(m, n), max_thresh)``
   (``keep_negative=False`` raises a negative ``t_m`` to 0: Trident's ``refine_neg_cos=False``);
3. the block's softmax attention (over all SAM tokens, relative positions included), cut to the valid
   grid on both sides without renormalising, kept where ``cos_h(m, n) > t_m`` and 0 elsewhere;
4. averaged over heads and divided by its row sum: one (N, N) weight matrix, N = sh * sw, for every
   channel (Trident applies it per head of its 768 channels, the same matrix each time).

Any dense map (B, C, h, w) is then resized bilinearly to (sh, sw) and aggregated, ``out[:, m] =
sum_n W[m, n] f[:, n]`` (:meth:`SAMCorrelationAggregator.forward`). The weights are accumulated head by
head while SAM's encoder runs (:func:`~ovseg.models.backbones.sam_encoder_backbone.encode_with_last_attention`),
so the (heads, 4096, 4096) attention map is never held whole; the threshold only needs the values:
``mean_n cos_h(m, n) = v̂_m · mean_n v̂_n``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.backbones.affinity import Affinity
from ovseg.models.backbones.sam_encoder_backbone import encode_with_last_attention
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS


def valid_cells(valid_grid, grid, device=None):
    """Flat indices (row-major in the full ``grid``) of the top-left ``valid_grid`` cells."""
    rows = torch.arange(valid_grid[0], device=device)[:, None] * grid[1]
    return (rows + torch.arange(valid_grid[1], device=device)[None]).flatten()


class _WeightAccumulator:
    """Consumer of :func:`encode_with_last_attention`: sums the kept attention over heads (module docstring)."""

    def __init__(self, valid_grid, grid, cos_fac, max_thresh, keep_negative, device, observe=None):
        self.valid_grid, self.grid, self.observe = tuple(valid_grid), tuple(grid), observe
        self.index = valid_cells(valid_grid, grid, device)
        self.cos_fac, self.max_thresh, self.keep_negative = cos_fac, max_thresh, keep_negative
        self.total, self.thresh, self.v_hat, self.heads = None, None, None, 0

    def threshold(self, v_hat):
        """(B, heads, N, d) unit values -> (B, N) thresholds (step 2 of the module docstring)."""
        mean_cos = (v_hat @ v_hat.mean(dim=2, keepdim=True).transpose(-2, -1))[..., 0]  # (B, heads, N)
        thresh = (self.cos_fac * mean_cos.mean(dim=1)).clamp(max=self.max_thresh)
        return thresh if self.keep_negative else thresh.clamp(min=0.0)

    def valid(self, attn):
        """(B, c, L, L) weights of the full grid -> (B, c, N, N) of the valid cells (a copy, or ``attn``
        itself when the whole grid is valid)."""
        if self.valid_grid == self.grid:
            return attn
        (sh, sw), (gh, gw) = self.valid_grid, self.grid
        b, c = attn.shape[:2]
        return attn.view(b, c, gh, gw, gh, gw)[:, :, :sh, :sw, :sh, :sw].reshape(b, c, sh * sw, sh * sw)

    def __call__(self, attn, v, heads):
        with float32_region(attn):
            if self.thresh is None:
                self.v_hat = F.normalize(upcast(v[:, :, self.index]).float(), dim=-1)
                self.thresh = self.threshold(self.v_hat)
            v_hat = self.v_hat[:, heads.start:heads.stop]
            cos = v_hat @ v_hat.transpose(-2, -1)
            valid = upcast(self.valid(attn)).float()
            if self.observe is not None:  # before the weights are overwritten below
                self.observe(dict(attn=attn, valid=valid, cos=cos, thresh=self.thresh, heads=heads, v=v))
            kept = valid.masked_fill_(cos <= self.thresh[:, None, :, None], 0.0)
            part = kept.sum(dim=1)
            self.total = part if self.total is None else self.total.add_(part)
            self.heads += len(heads)

    def weights(self):
        mean = self.total / self.heads
        return mean / mean.sum(dim=-1, keepdim=True)


@MODELS.register_module()
class SAMCorrelationAggregator(nn.Module):
    """Aggregate any dense features with correlations of SAM's image encoder (module docstring).

    Call graph::

        correlation(encoder, x, valid_grid)      SAM encoder pass ─ kept attention summed per head chunk
          -> (embedding, Affinity (1, N, N) on the valid grid)
        forward(feats, affinity)                 bilinear resize to the valid grid ─ W @ features

    Args:
        cos_fac (float): multiple of the mean value cosine that a key must exceed. Default 1.2 (Trident's).
        max_thresh (float): cap of the threshold. Default 0.9 (Trident's).
        keep_negative (bool): keep negative thresholds (Trident's ``refine_neg_cos=True``, its default);
            False raises them to 0 (its ADE20K config). Default True.
        head_chunk (int): SAM heads whose attention is computed at once. Default 2.
    """

    timed_stages = (('correlation', 'sam_encoder'), ('accumulate', 'sam_weights'))  # StageTimer

    def __init__(self, cos_fac=1.2, max_thresh=0.9, keep_negative=True, head_chunk=2):
        super().__init__()
        self.cos_fac, self.max_thresh = float(cos_fac), float(max_thresh)
        self.keep_negative, self.head_chunk = bool(keep_negative), int(head_chunk)

    @torch.no_grad()
    def correlation(self, encoder, x, valid_grid, observe=None):
        """Run SAM's image encoder on ``x`` and build the aggregation weights of its valid grid.

        Args:
            encoder: segment-anything ``ImageEncoderViT``.
            x (Tensor): (1, 3, S, S) preprocessed SAM input.
            valid_grid (tuple[int, int]): (sh, sw) cells of the encoder grid covering the image.
            observe (Callable, optional): called per head chunk with a dict (``attn`` (1, c, L, L) full
                weights, ``valid`` (1, c, N, N) their valid part, ``cos`` (1, c, N, N) value cosines,
                ``thresh`` (1, N), ``heads``, ``v`` (1, heads, L, d)) before they are used (inspection, tests).

        Returns:
            tuple[Tensor, Affinity]: the encoder's embedding (1, C, g, g) and the weights
            (1, N, N) on ``valid_grid``.
        """
        grid = tuple(int(s) // encoder.patch_embed.proj.stride[0] for s in x.shape[-2:])
        valid_grid = tuple(int(g) for g in valid_grid)
        if not (0 < valid_grid[0] <= grid[0] and 0 < valid_grid[1] <= grid[1]):
            raise ValueError(f'valid grid {valid_grid} must lie inside the encoder grid {grid}')
        acc = _WeightAccumulator(valid_grid, grid, self.cos_fac, self.max_thresh, self.keep_negative, x.device,
                                 observe)
        embedding = encode_with_last_attention(encoder, x, lambda *args: self.accumulate(acc, *args),
                                               self.head_chunk)
        with float32_region(x):
            return embedding, Affinity(weights=acc.weights(), grid=valid_grid, value_grid=valid_grid)

    def accumulate(self, acc, attn, v, heads):
        """One head chunk of the weights (a method so that stage timers see it apart from the encoder)."""
        acc(attn, v, heads)

    def forward(self, feats, affinity):
        """(B, C, h, w) features -> (B, C, sh, sw) aggregated with the (B or 1, N, N) weights.

        Features are resized bilinearly (``align_corners=False``) to the weights' grid first.
        """
        with float32_region(feats):
            feats = upcast(feats).float()
            if tuple(feats.shape[-2:]) != tuple(affinity.grid):
                feats = F.interpolate(feats, size=tuple(affinity.grid), mode='bilinear', align_corners=False)
            b, c = feats.shape[:2]
            out = feats.flatten(2) @ affinity.weights.float().transpose(-2, -1)
            return out.view(b, c, *affinity.grid)
