import torch
import torch.nn.functional as F


def point_sample(input, points, align_corners=False, **kwargs):
    """Sample ``input`` at normalised point coordinates (same contract as ``mmcv.ops.point_sample``).

    Args:
        input (Tensor): (N, C, H, W) feature map.
        points (Tensor): (N, P, 2) or (N, Hg, Wg, 2) xy coordinates in [0, 1].
        align_corners (bool): passed to ``grid_sample``. Default False.

    Returns:
        Tensor: (N, C, P) or (N, C, Hg, Wg) sampled features.
    """
    add_dim = points.dim() == 3
    if add_dim:
        points = points.unsqueeze(2)
    out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if add_dim else out
