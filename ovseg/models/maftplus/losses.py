"""MAFT+'s training-only losses: the mask-aware (ranking) loss and representation compensation."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.registry import MODELS


@MODELS.register_module()
class MAFTMaskAwareLoss(nn.Module):
    """Out-of-vocabulary class probabilities should rank the proposals by their IoU with each object.

    For every ground-truth mask g of class c: ``p[q] = softmax(logits[q, :-1])[c]`` over the queries q and
    ``y[q] = IoU(sigmoid(mask_q), g)`` (soft IoU; masks resized bilinearly to the target size), min-max
    normalised over the queries; the loss is the smooth-L1 (beta 1) mean over all objects and queries.

    Args:
        loss_weight (float): multiplier. Default 1 (MAFT+ adds it unweighted).
    """

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = float(loss_weight)

    def forward(self, logits, mask_logits, targets):
        """Args:
            logits (Tensor): (B, Q, K + 1) out-of-vocabulary logits (void last).
            mask_logits (Tensor): (B, Q, h, w) mask logits (no gradient needed).
            targets (list[dict]): ``labels`` (T,), ``masks`` (T, H, W) per image.
        """
        probs = F.softmax(logits[..., :-1], dim=-1)
        preds, ious = [], []
        for b, target in enumerate(targets):
            if len(target['labels']) == 0:
                continue
            masks = target['masks'].float()
            pred = mask_logits[b].detach().float().sigmoid()
            if pred.shape[-2:] != masks.shape[-2:]:
                pred = F.interpolate(pred[None], size=masks.shape[-2:], mode='bilinear', align_corners=False)[0]
            pred, masks = pred.flatten(1), masks.flatten(1)
            inter = masks @ pred.T  # (T, Q)
            union = masks.sum(1, keepdim=True) + pred.sum(1)[None] - inter + 1e-7
            iou = inter / union
            low, high = iou.min(-1, keepdim=True).values, iou.max(-1, keepdim=True).values
            ious.append((iou - low) / (high - low + 1e-8))
            preds.append(probs[b][:, target['labels']].T)  # (T, Q)
        if not preds:
            return logits.sum() * 0.0
        return self.loss_weight * F.smooth_l1_loss(torch.cat(preds), torch.cat(ious).detach())


def global_pod(x, scales=(1, 2, 4)):
    """MAFT+'s pooled-outputs distillation embedding (``_global_pod``): average pooling with kernel
    ``width // s`` for each scale s, then row sums and column sums, concatenated. Non-square maps are
    resized (bilinear) to a square of their longer side first; the kernel still uses the original width,
    as released.

    Args:
        x (Tensor): (B, C, H, W).

    Returns:
        Tensor: (B, D).
    """
    b, width = x.shape[0], x.shape[-1]
    if x.shape[-1] != x.shape[-2]:
        side = max(x.shape[-2:])
        x = F.interpolate(x, size=(side, side), mode='bilinear', align_corners=False)
    embeddings = []
    for scale in scales:
        kernel = width // scale
        if kernel < 1:
            raise ValueError(f'representation compensation needs maps at least {scale} wide, got {width}')
        pooled = F.avg_pool2d(x, kernel_size=kernel)
        embeddings.append(torch.cat([pooled.sum(dim=2).view(b, -1), pooled.sum(dim=3).view(b, -1)], dim=-1))
    return torch.cat(embeddings, dim=1)


@MODELS.register_module()
class MAFTRepresentationCompensationLoss(nn.Module):
    """Keep the fine-tuned CLIP's dense map close to the frozen original's: smooth-L1 between the
    :func:`global_pod` embeddings of the ReLU'd maps (MAFT+'s defaults: 'relu', scales (1, 2, 4), 'sl1').

    Args:
        loss_weight (float): MAFT+'s ``rc_weights``. Default 0.1.
        scales (Sequence[int]): pooling scales. Default (1, 2, 4).
    """

    def __init__(self, loss_weight=0.1, scales=(1, 2, 4)):
        super().__init__()
        self.loss_weight, self.scales = float(loss_weight), tuple(scales)

    def forward(self, student, teacher):
        """(B, C, H, W) dense maps of the trained and the frozen CLIP -> weighted scalar loss."""
        if student.shape != teacher.shape:
            raise ValueError(f'student {tuple(student.shape)} and teacher {tuple(teacher.shape)} maps differ')
        a = global_pod(student.float().clamp(min=0), self.scales)
        b = global_pod(teacher.float().clamp(min=0), self.scales)
        return self.loss_weight * F.smooth_l1_loss(a, b)
