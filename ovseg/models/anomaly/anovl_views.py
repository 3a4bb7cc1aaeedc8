"""AnoVL's 22 augmented views of a test image for the image score (reference ``utils.aug``).

Views, in this canonical order (the reference shuffles them with ``torch.randperm``; its score is a mean
over views, so the order changes only the float summation):

0. the image; 1-8. rotations by -pi/4, -3pi/16, -pi/8, -pi/16, pi/16, pi/8, 3pi/16, pi/4;
9-16. translations by (0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2), (0.1, 0.1), (-0.1, 0.1),
(-0.1, -0.1), (0.1, -0.1) in normalised coordinates; 17. horizontal flip; 18. grey;
19-21. rotations by 90, 180, 270 degrees.

Rotations and translations sample with ``affine_grid`` / ``grid_sample`` (bilinear, reflection padding,
``align_corners=True``; matrix entries computed in float32 as the reference does). Views are taken of the
**normalised** image (the reference augments the model input), so "grey" is
0.299 R + 0.587 G + 0.114 B of the normalised channels (kornia's ``rgb_to_grayscale`` weights), repeated
to three channels. The 90-degree rotations are exact permutations (``torch.rot90``, counter-clockwise);
the reference's kornia ``rotate`` samples the same pixels up to float32 rounding of cos(90 deg).
"""
import math

import torch
import torch.nn.functional as F

ROTATIONS = (-math.pi / 4, -3 * math.pi / 16, -math.pi / 8, -math.pi / 16, math.pi / 16, math.pi / 8,
             3 * math.pi / 16, math.pi / 4)
TRANSLATIONS = ((0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2), (0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1),
                (0.1, -0.1))
GREY_WEIGHTS = (0.299, 0.587, 0.114)
NUM_VIEWS = 1 + len(ROTATIONS) + len(TRANSLATIONS) + 1 + 1 + 3


def _warp(images, theta):
    """Sample ``images`` (B, 3, H, W) through a (2, 3) float32 normalised affine matrix."""
    theta = theta.to(images.device, images.dtype)[None].expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode='bilinear', padding_mode='reflection', align_corners=True)


def rotate(images, angle):
    """Rotate by ``angle`` radians about the centre (reference ``rot_img``)."""
    t = torch.tensor(angle, dtype=torch.float32)
    cos, sin = torch.cos(t), torch.sin(t)
    zero = torch.zeros((), dtype=torch.float32)
    return _warp(images, torch.stack([torch.stack([cos, -sin, zero]), torch.stack([sin, cos, zero])]))


def translate(images, a, b):
    """Shift by (a, b) in normalised [-1, 1] coordinates (reference ``translation_img``)."""
    return _warp(images, torch.tensor([[1.0, 0.0, a], [0.0, 1.0, b]], dtype=torch.float32))


def grey(images):
    """Weighted channel sum of (normalised) RGB images repeated to 3 channels."""
    w_r, w_g, w_b = GREY_WEIGHTS
    y = w_r * images[:, 0:1] + w_g * images[:, 1:2] + w_b * images[:, 2:3]
    return y.repeat(1, 3, 1, 1)


def anovl_views(images):
    """The :data:`NUM_VIEWS` views of each image.

    Args:
        images (Tensor): (B, 3, H, W) normalised images (square for the 90-degree rotations).

    Returns:
        Tensor: (B, 22, 3, H, W) views in the canonical order of the module docstring.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f'AnoVL views rotate by 90 degrees and need square images, got '
                         f'{tuple(images.shape[-2:])}')
    views = [images]
    views += [rotate(images, angle) for angle in ROTATIONS]
    views += [translate(images, a, b) for a, b in TRANSLATIONS]
    views += [images.flip(-1), grey(images)]
    views += [torch.rot90(images, k, dims=(-2, -1)) for k in (1, 2, 3)]
    return torch.stack(views, dim=1)
