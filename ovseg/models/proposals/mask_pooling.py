"""Masks -> pooled dense features -> class probabilities -> per-pixel scores."""
import torch
import torch.nn.functional as F


OVERLAP_RULES = ('mean', 'smallest', 'best_iou')


def mask_cell_weights(masks, grid):
    """Fraction of every feature cell covered by every mask.

    Args:
        masks (Tensor): (N, H, W) bool masks of a window whose sides are multiples of the grid's.
        grid (tuple[int, int]): (h, w) feature grid of the window.

    Returns:
        Tensor: (N, h * w) float32 weights in [0, 1].
    """
    return F.adaptive_avg_pool2d(masks[:, None].float(), grid).flatten(1)


def pool_features(weights, dense):
    """(N, hw) weights and (C, h, w) features -> (N, C) weighted feature sums."""
    return weights @ dense.float().flatten(1).transpose(0, 1)


def masks_to_scores(masks, mask_probs, fallback, rule='mean', iou=None, chunk=32):
    """Per-pixel class scores from classified masks.

    Rules for a pixel covered by several masks: 'mean' averages their class probabilities (order free);
    'smallest' takes the smallest mask's (finest part wins); 'best_iou' takes the mask with the highest
    predicted IoU. Pixels no mask covers keep ``fallback`` (the dense per-pixel probabilities).

    Args:
        masks (Tensor): (N, H, W) bool.
        mask_probs (Tensor): (N, K) class probabilities of the masks.
        fallback (Tensor): (K, H, W) scores of uncovered pixels.
        rule (str): 'mean' (default), 'smallest' or 'best_iou'.
        iou (Tensor, optional): (N,) predicted IoU, needed by 'best_iou'.
        chunk (int): masks per matrix product ('mean'). Default 32.

    Returns:
        Tensor: (K, H, W) float32 scores.
    """
    if rule not in OVERLAP_RULES:
        raise ValueError(f'rule must be one of {OVERLAP_RULES}, got {rule!r}')
    num_classes, height, width = fallback.shape
    if len(masks) == 0:
        return fallback.float()
    mask_probs = mask_probs.float()
    if rule == 'mean':
        sums = fallback.new_zeros((num_classes, height * width), dtype=torch.float32)
        for m, p in zip(masks.split(chunk), mask_probs.split(chunk)):
            sums += p.transpose(0, 1) @ m.flatten(1).float()
        count = masks.sum(dim=0, dtype=torch.float32).flatten()
        scores = sums / count.clamp(min=1)
        return torch.where(count > 0, scores, fallback.flatten(1).float()).view(num_classes, height, width)
    if rule == 'best_iou' and iou is None:
        raise ValueError("rule 'best_iou' needs the masks' predicted IoU.")
    key = -masks.flatten(1).sum(dim=1).float() if rule == 'smallest' else iou.float()
    order = torch.argsort(key, stable=True)  # ascending: the winning mask is written last
    owner = torch.full((height, width), -1, dtype=torch.long, device=masks.device)
    for index in order.tolist():
        owner[masks[index]] = index
    scores = mask_probs[owner.clamp(min=0)].permute(2, 0, 1)
    return torch.where(owner[None] >= 0, scores, fallback.float())
