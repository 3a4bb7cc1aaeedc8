"""Positional-embedding resizing for ViT towers, in the conventions the reference codes use.

A CLIP positional embedding is (1 + g0 * g0, D): the class row, then a square g0 x g0 grid. For an input
grid (h, w) other than the stored one the grid part is resized; the class row is kept. The originals
differ in how:

- ``'bicubic'`` / ``'bilinear'``: ``F.interpolate(size=(h, w), align_corners=False)`` (open_clip,
  MaskCLIP, CLIP-DINOiser, WinCLIP, AnoVL: bicubic; AnomalyCLIP: bilinear).
- ``'bicubic_scale'``: ``F.interpolate(scale_factor=((h + 0.1) / g0, (w + 0.1) / g0), mode='bicubic')``
  (DINO's ``interpolate_pos_encoding``, used by SCLIP, ClearCLIP and NACLIP). The output size is still
  (h, w), but the given scale factor, not h / g0, maps output to input coordinates, so the sampled
  positions differ slightly from ``'bicubic'``.
"""
import torch
import torch.nn.functional as F

POS_MODES = ('bicubic', 'bilinear', 'bicubic_scale')


def resize_pos_embed(pos_embed, grid, mode='bicubic', grid_size=None):
    """(1 + g0 * g0, D) positional embedding -> (1 + h * w, D) for the (h, w) grid.

    Args:
        pos_embed (Tensor): class row first, then the stored grid row-major.
        grid (tuple[int, int]): target (h, w).
        mode (str): one of :data:`POS_MODES` (module docstring). Default 'bicubic'.
        grid_size (tuple[int, int], optional): stored (gh, gw); default square, inferred from the rows.

    Returns:
        Tensor: the embedding itself when the grid already matches, else the resized one (same dtype; the
        interpolation runs in float32).
    """
    if mode not in POS_MODES:
        raise ValueError(f'positional-embedding mode must be one of {POS_MODES}, got {mode!r}')
    if grid_size is None:
        side = int(round((pos_embed.shape[0] - 1) ** 0.5))
        grid_size = (side, side)
    grid, grid_size = tuple(int(g) for g in grid), tuple(int(g) for g in grid_size)
    if grid == grid_size:
        return pos_embed
    dim = pos_embed.shape[-1]
    body = pos_embed[1:].reshape(1, grid_size[0], grid_size[1], dim).permute(0, 3, 1, 2).float()
    if mode == 'bicubic_scale':
        scale = ((grid[0] + 0.1) / grid_size[0], (grid[1] + 0.1) / grid_size[1])
        body = F.interpolate(body, scale_factor=scale, mode='bicubic', align_corners=False,
                             recompute_scale_factor=False)
        if tuple(body.shape[-2:]) != grid:
            raise RuntimeError(f'scale-factor resize gave {tuple(body.shape[-2:])}, expected {grid}')
    else:
        body = F.interpolate(body, size=grid, mode=mode, align_corners=False)
    body = body.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(-1, dim)
    return torch.cat([pos_embed[:1], body], dim=0)
