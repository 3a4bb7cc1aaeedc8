"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as NACLIP / SCLIP run it.

Reference: visinf/1-stage-wseg ``models/mods/pamr.py``, copied into sinahmr/NACLIP and wangf3014/SCLIP
(``pamr.py``). For a guide image x (B, C, H, W) and scores m (B, K, H, W):

1. m is resized to the guide's size (bilinear, ``align_corners=True``).
2. For each dilation d and each of the 8 neighbours n at offset d (replicate padding by d):
   ``a_n = -|x - x_n| / (1e-8 + 0.1 s)``, where s is the per-channel standard deviation (unbiased) of the
   9 values of the dilated 3x3 neighbourhood at every dilation (the centre included, 9 per dilation);
   ``a`` is averaged over the guide channels and normalised by a softmax over all neighbours of all
   dilations.
3. ``num_iter`` times: ``m = sum_n a_n * m_n`` (neighbour values, replicate padding; the centre is not a
   neighbour).

Implemented with shifted views instead of the reference's fixed 3x3 convolutions (same values; the
reference materialises a (B, K, 8 * dilations, H, W) tensor per iteration, this sums neighbour by
neighbour and holds one (B, K, H, W) accumulator).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS

# The 8 neighbours in the reference's kernel order (row-major 3x3 without the centre).
_NEIGHBOURS = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))
# The 3x3 neighbourhood with its centre, row-major (the reference's standard-deviation kernel).
_WINDOW = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2))


def _shifted(padded, d, offset, size):
    """The (B, C, H, W) view of ``padded`` (replicate-padded by d) at a 3x3 kernel position."""
    (r, c), (h, w) = offset, size
    return padded[..., r * d:r * d + h, c * d:c * d + w]


def _affinity(x, dilations):
    """(B, N, H, W) softmax-normalised neighbour affinities of the guide (N = 8 * len(dilations))."""
    size = x.shape[-2:]
    padded = [F.pad(x, [d] * 4, mode='replicate') for d in dilations]
    window = [_shifted(p, d, o, size) for p, d in zip(padded, dilations) for o in _WINDOW]
    std = torch.stack(window, dim=2).std(dim=2)  # (B, C, H, W), unbiased
    diffs = [(x - _shifted(p, d, o, size)).abs() for p, d in zip(padded, dilations) for o in _NEIGHBOURS]
    aff = -torch.stack(diffs, dim=2) / (1e-8 + 0.1 * std[:, :, None])
    return aff.mean(dim=1).softmax(dim=1)


def pamr(image, scores, num_iter=10, dilations=(8, 16)):
    """Refine (B, K, h, w) scores with the (B, C, H, W) guide image; returns (B, K, H, W) float32.

    Args:
        image (Tensor): guide, e.g. the normalised network input (NACLIP uses it as is).
        scores (Tensor): logits or probabilities; resized to the guide size first (bilinear,
            ``align_corners=True``).
        num_iter (int): propagation steps. Default 10 (NACLIP).
        dilations (Sequence[int]): neighbourhood dilations. Default (8, 16) (NACLIP, SCLIP).
    """
    with float32_region(image):
        image, scores = upcast(image).float(), upcast(scores).float()
        scores = F.interpolate(scores, size=image.shape[-2:], mode='bilinear', align_corners=True)
        aff = _affinity(image, tuple(int(d) for d in dilations))
        size = scores.shape[-2:]
        for _ in range(int(num_iter)):
            padded = [F.pad(scores, [d] * 4, mode='replicate') for d in dilations]
            out = torch.zeros_like(scores)
            n = 0
            for p, d in zip(padded, dilations):
                for o in _NEIGHBOURS:
                    out.addcmul_(aff[:, n:n + 1], _shifted(p, d, o, size))
                    n += 1
            scores = out
        return scores


@MODELS.register_module()
class PAMR(nn.Module):
    """PAMR as a registered post-processor: ``PAMR()(scores, image) -> refined scores``.

    Any segmentor can use it on its (B, K, H, W) scores with the (B, 3, H, W) image as guide (the
    guide is resized to the scores' size first, bilinear, when they differ).

    Args:
        num_iter (int): propagation steps. Default 10.
        dilations (Sequence[int]): neighbourhood dilations. Default (8, 16).
    """

    def __init__(self, num_iter=10, dilations=(8, 16)):
        super().__init__()
        if int(num_iter) < 0 or not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f'PAMR needs num_iter >= 0 and dilations >= 1, got {num_iter}, {dilations}')
        self.num_iter, self.dilations = int(num_iter), tuple(int(d) for d in dilations)

    def forward(self, scores, image):
        if tuple(image.shape[-2:]) != tuple(scores.shape[-2:]):
            image = F.interpolate(image.float(), size=scores.shape[-2:], mode='bilinear', align_corners=False)
        return pamr(image, scores, self.num_iter, self.dilations)

    def extra_repr(self):
        return f'num_iter={self.num_iter}, dilations={self.dilations}'
