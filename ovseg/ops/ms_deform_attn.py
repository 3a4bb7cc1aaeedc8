import torch.nn.functional as F


def multi_scale_deformable_attn_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    """Multi-scale deformable attention in pure PyTorch (same contract as mmcv's function of this name).

    Every head samples ``P`` bilinear points per level around its reference point (``F.grid_sample``, zero
    padding, ``align_corners=False``) and sums them with its attention weights. One ``grid_sample`` call
    per level covers all batches, heads, queries and points; levels are accumulated one at a time, so the
    peak extra memory is one level's samples (B·M, D, Lq, P) rather than all levels stacked.

    Args:
        value (Tensor): (B, S, M, D) values of all levels, flattened level after level (S = sum H_l·W_l),
            M heads of D channels.
        value_spatial_shapes (Tensor | Sequence[tuple[int, int]]): (L, 2) (H_l, W_l) of each level.
        sampling_locations (Tensor): (B, Lq, M, L, P, 2) xy in [0, 1] (normalised by each level's size).
        attention_weights (Tensor): (B, Lq, M, L, P), softmax-normalised over L·P by the caller.

    Returns:
        Tensor: (B, Lq, M·D).
    """
    b, _, heads, dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in value_spatial_shapes]
    # (B, Lq, M, L, P, 2) -> (B, M, L, Lq, P, 2): one (B·M) batch of grids per level
    grids = (2 * sampling_locations - 1).permute(0, 2, 3, 1, 4, 5)
    weights = attention_weights.permute(0, 2, 3, 1, 4)
    out, start = None, 0
    for level, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(b * heads, dims, h, w)
        start += h * w
        grid = grids[:, :, level].reshape(b * heads, num_queries, num_points, 2)
        sampled = F.grid_sample(v, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
        weight = weights[:, :, level].reshape(b * heads, 1, num_queries, num_points)
        term = (sampled * weight).sum(-1)  # (B·M, D, Lq)
        out = term if out is None else out + term
    return out.view(b, heads * dims, num_queries).transpose(1, 2).contiguous()
