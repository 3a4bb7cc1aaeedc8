"""Sine positional encoding of a feature map (DETR / Mask2Former, normalised coordinates)."""
import math

import torch


def sine_position_encoding(x, num_feats, temperature=10000, scale=2 * math.pi):
    """Sine/cosine encoding of the (y, x) position of every location of ``x``.

    Coordinates are 1-based cumulative positions normalised to (0, ``scale``] (no padding mask: every
    location is valid, as in FC-CLIP, which never masks padded regions).

    Args:
        x (Tensor): (B, C, H, W); only its shape, device and batch size are used.
        num_feats (int): channels per axis; the output has ``2 * num_feats`` channels (y first, then x).
        temperature (float): frequency base. Default 10000.
        scale (float): range of the normalised coordinates. Default 2π.

    Returns:
        Tensor: (B, 2 * num_feats, H, W) float32.
    """
    b, _, h, w = x.shape
    ones = torch.ones((b, h, w), device=x.device, dtype=torch.float32)
    y_embed = ones.cumsum(1)
    x_embed = ones.cumsum(2)
    eps = 1e-6
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    # interleave sin (even channels) and cos (odd channels)
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
