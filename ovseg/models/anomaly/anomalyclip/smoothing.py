"""Gaussian smoothing equal to ``scipy.ndimage.gaussian_filter`` (mode 'reflect', truncate 4) in torch.

scipy's 'reflect' mirrors about the edge with the edge pixel repeated (``d c b a | a b c d``); each axis
pass accumulates in float64 and stores the input dtype, rows (H) first, then columns (W). Doing the same
here keeps AnomalyCLIP's smoothed maps within float32 rounding of the reference on any device.
"""
import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma, truncate=4.0, dtype=torch.float64, device=None):
    """Normalised 1-D kernel of radius ``int(truncate * sigma + 0.5)`` (scipy's)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    phi = torch.exp(-0.5 / float(sigma) ** 2 * x ** 2)
    return (phi / phi.sum()).to(dtype)


def _symmetric_index(n, radius, device):
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def _smooth_axis(x, kernel, dim):
    radius = (kernel.numel() - 1) // 2
    x = x.index_select(dim, _symmetric_index(x.shape[dim], radius, x.device)).double()
    x = x.movedim(dim, -1)
    shape = x.shape
    y = F.conv1d(x.reshape(-1, 1, shape[-1]), kernel.view(1, 1, -1))
    return y.reshape(*shape[:-1], -1).movedim(-1, dim)


def gaussian_filter2d(maps, sigma=4.0, truncate=4.0):
    """Smooth (..., H, W) maps like ``gaussian_filter(map, sigma)`` per 2-D map (float64 passes)."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma, truncate, device=maps.device)
    out = _smooth_axis(maps, kernel, maps.dim() - 2).to(maps.dtype)
    return _smooth_axis(out, kernel, maps.dim() - 1).to(maps.dtype)
