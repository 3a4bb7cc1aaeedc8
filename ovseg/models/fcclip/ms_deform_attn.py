"""Multi-scale deformable attention (Deformable DETR), pure PyTorch with mmcv's CUDA kernel when present."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.ops.ms_deform_attn import multi_scale_deformable_attn_pytorch
from ovseg.utils.mmcv_ops import compiled_mmcv_available


def _compiled_function():
    """mmcv's autograd function around its CUDA kernel, or None with mmcv-lite."""
    if not compiled_mmcv_available():
        return None
    try:
        from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction
    except ImportError:
        return None
    return MultiScaleDeformableAttnFunction


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                   im2col_step=128):
    """Dispatch: compiled mmcv kernel for CUDA tensors when full mmcv is installed, else pure PyTorch.

    Shapes as in :func:`ovseg.ops.ms_deform_attn.multi_scale_deformable_attn_pytorch`;
    ``spatial_shapes`` (L, 2) and ``level_start_index`` (L,) are int64 tensors.
    """
    if value.is_cuda:
        function = _compiled_function()
        if function is not None:
            return function.apply(value, spatial_shapes, level_start_index, sampling_locations,
                                  attention_weights, im2col_step)
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention of Deformable DETR (2-d reference points).

    Each query predicts, per head, ``num_points`` offsets on every level around its reference point
    and softmax weights over all ``num_levels * num_points`` samples.

    Args:
        embed_dim (int): channels. Default 256.
        num_levels (int): feature levels. Default 4.
        num_heads (int): attention heads (``embed_dim`` divisible by it). Default 8.
        num_points (int): sampling points per head and level. Default 4.
        im2col_step (int): chunk size of the CUDA kernel. Default 128.
        level_mismatch (str, optional): what to do when the value has fewer levels than ``num_levels``.
            None (default) raises. 'cuda_kernel' reproduces the compiled Deformable-DETR kernel given
            ``num_levels``-level offsets and weights but fewer value levels: it takes the level count from
            ``spatial_shapes`` and reads the contiguous offset / weight buffers with that stride, so query
            q, head m reads the entries of another query, head and level (the first third of the buffers
            for 3 configured levels and 1 given) and its weights no longer sum to 1 (FrozenSeg's released
            SAM branch). 'fold' (one given level only) samples every configured level's points on that
            level, with the query's own offsets and weights (softmax over all of them).
    """

    LEVEL_MISMATCH = (None, 'cuda_kernel', 'fold')

    def __init__(self, embed_dim=256, num_levels=4, num_heads=8, num_points=4, im2col_step=128,
                 level_mismatch=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f'embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})')
        if level_mismatch not in self.LEVEL_MISMATCH:
            raise ValueError(f'level_mismatch must be one of {self.LEVEL_MISMATCH}, got {level_mismatch!r}')
        self.level_mismatch = level_mismatch
        self.embed_dim, self.num_levels = embed_dim, num_levels
        self.num_heads, self.num_points = num_heads, num_points
        self.im2col_step = im2col_step
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.init_weights()

    def init_weights(self):
        """Deformable DETR's initialisation: offsets start on rays around the reference point."""
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.constant_(proj.bias, 0.0)

    def forward(self, query, reference_points, value, spatial_shapes, level_start_index):
        """Attend from queries to the flattened multi-level ``value``.

        Args:
            query (Tensor): (B, Lq, C) queries (with positional embedding).
            reference_points (Tensor): (B, Lq, L, 2) xy in [0, 1] per level.
            value (Tensor): (B, S, C) flattened levels.
            spatial_shapes (Tensor): (L, 2) int64 (H_l, W_l).
            level_start_index (Tensor): (L,) int64 offset of each level in ``value``.

        Returns:
            Tensor: (B, Lq, C).
        """
        b, num_queries, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        v = self.value_proj(value).view(b, value.shape[1], heads, self.embed_dim // heads)
        offsets = self.sampling_offsets(query).view(b, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(b, num_queries, heads, levels * points)
        weights = F.softmax(weights, -1).view(b, num_queries, heads, levels, points)
        # offsets are in pixels of each level: normalise by (W_l, H_l)
        normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normalizer[None, None, None, :, None, :])
        if spatial_shapes.shape[0] != levels:
            locations, weights = self._fit_levels(locations, weights, int(spatial_shapes.shape[0]))
        out = ms_deform_attn(v, spatial_shapes, level_start_index, locations, weights, self.im2col_step)
        return self.output_proj(out)

    def _fit_levels(self, locations, weights, given):
        """(B, Lq, M, L, P, 2) locations and (B, Lq, M, L, P) weights -> ``given`` levels (see
        ``level_mismatch``)."""
        b, num_queries, heads, levels, points, _ = locations.shape
        if self.level_mismatch is None or given > levels or (self.level_mismatch == 'fold' and given != 1):
            raise ValueError(f'MSDeformAttn built for {levels} levels got {given} (level_mismatch='
                             f'{self.level_mismatch!r}; "cuda_kernel" reproduces the compiled kernel, "fold" '
                             f'samples all levels\' points on a single given level).')
        if self.level_mismatch == 'fold':
            return (locations.reshape(b, num_queries, heads, 1, levels * points, 2),
                    weights.reshape(b, num_queries, heads, 1, levels * points))
        # the kernel walks the contiguous buffers with the stride of ``given`` levels, batch included
        n = b * num_queries * heads * given * points
        return (locations.contiguous().view(-1)[:2 * n].view(b, num_queries, heads, given, points, 2),
                weights.contiguous().view(-1)[:n].view(b, num_queries, heads, given, points))
