"""Point-sampled mask losses and matching costs of Mask2Former / FC-CLIP (dice and sigmoid BCE).

Masks are compared on sampled points instead of full maps: random points for the matching cost,
uncertainty-biased points (PointRend) for the loss.
"""
import torch
import torch.nn.functional as F

from ovseg.ops.point_sample import point_sample


def torch_rand(shape, device):
    """Default random source: ``torch.rand(shape)`` (the criterion's ``rand`` argument replaces it)."""
    return torch.rand(shape, device=device)


def uncertain_point_coords(mask_logits, num_points, oversample_ratio=3.0, importance_sample_ratio=0.75,
                           rand=torch_rand):
    """Points biased towards uncertain mask locations (logits near 0), plus uniform random points.

    ``num_points * oversample_ratio`` candidates are drawn uniformly; the ``importance_sample_ratio``
    share of ``num_points`` with the smallest |logit| is kept, the rest is drawn uniformly.

    Args:
        mask_logits (Tensor): (N, 1, H, W).
        num_points (int): points per mask.
        oversample_ratio (float): candidates per point, >= 1. Default 3.
        importance_sample_ratio (float): share of uncertain points, in [0, 1]. Default 0.75.
        rand (Callable): ``rand(shape, device)`` -> uniform [0, 1) tensor (two calls, in this order:
            candidates (N, num_points·oversample, 2), then extra points (N, rest, 2)).

    Returns:
        Tensor: (N, num_points, 2) xy in [0, 1].
    """
    n = mask_logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = rand((n, num_sampled, 2), mask_logits.device)
    uncertainty = -point_sample(mask_logits, coords, align_corners=False).abs()
    num_uncertain = int(importance_sample_ratio * num_points)
    idx = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]
    coords = torch.gather(coords, 1, idx[..., None].expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords = torch.cat([coords, rand((n, num_random, 2), mask_logits.device)], dim=1)
    return coords


def dice_loss(logits, targets, num_masks):
    """Sum over masks of 1 - (2|p·t| + 1) / (|p| + |t| + 1), divided by ``num_masks``.

    Args:
        logits (Tensor): (N, P) point logits. targets (Tensor): (N, P) in {0, 1}.
        num_masks (float): normaliser (targets in the batch, averaged over processes).
    """
    probs = logits.sigmoid().flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def sigmoid_ce_loss(logits, targets, num_masks):
    """Mean binary cross-entropy per mask, summed over masks, divided by ``num_masks``."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    return loss.mean(1).sum() / num_masks


def batch_dice_cost(logits, targets):
    """(Q, P) logits x (T, P) targets -> (Q, T) dice loss of every pair."""
    probs = logits.sigmoid().flatten(1)
    numerator = 2 * torch.einsum('nc,mc->nm', probs, targets)
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(logits, targets):
    """(Q, P) logits x (T, P) targets -> (Q, T) mean binary cross-entropy of every pair."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction='none')
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction='none')
    cost = torch.einsum('nc,mc->nm', pos, targets) + torch.einsum('nc,mc->nm', neg, 1 - targets)
    return cost / logits.shape[1]
