import torch
import torch.nn.functional as F


def sigmoid_focal_loss(pred, target, gamma=2.0, alpha=0.25, weight=None, reduction='mean'):
    """Sigmoid focal loss with class-index targets (same contract as ``mmcv.ops.sigmoid_focal_loss``).

    Args:
        pred (Tensor): (N, C) logits.
        target (Tensor): (N,) int64 class indices; ``C`` (or any value >= C) means background.
        gamma (float): focusing parameter. Default 2.0.
        alpha (float): weight of positives. Default 0.25.
        weight (Tensor, optional): (C,) per-class weight.
        reduction (str): 'none' | 'mean' | 'sum'. Default 'mean'.
    """
    num_classes = pred.size(1)
    one_hot = F.one_hot(target.clamp(max=num_classes), num_classes + 1)[:, :num_classes].to(pred.dtype)
    prob = pred.sigmoid()
    pt = (1 - prob) * one_hot + prob * (1 - one_hot)
    focal_weight = (alpha * one_hot + (1 - alpha) * (1 - one_hot)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, one_hot, reduction='none') * focal_weight
    if weight is not None:
        loss = loss * weight.view(1, -1)
    if reduction == 'mean':
        return loss.mean()
    if reduction == 'sum':
        return loss.sum()
    return loss
