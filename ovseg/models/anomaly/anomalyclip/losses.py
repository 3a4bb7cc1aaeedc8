"""AnomalyCLIP's training losses on probability maps (reference ``loss.py`` / ``train.py``).

- :func:`probability_focal_loss`: focal loss whose *inputs are probabilities* (no softmax inside):
  one-hot targets clamped to [smooth, 1 - smooth], p_t = sum(onehot * p) + smooth,
  loss = mean(-(1 - p_t) ** gamma * log p_t) over every pixel (alpha = 1 for every class).
- :func:`binary_dice_loss`: 1 - mean over images of (2 |P G| + 1) / (|P| + |G| + 1).
- :func:`anomalyclip_losses`: image cross-entropy on cos / temperature, and per layer
  focal(S) + dice(S[:, 1], G) + dice(S[:, 0], 1 - G), summed over layers and multiplied by ``lam``.
"""
import torch
import torch.nn.functional as F


def probability_focal_loss(probs, target, gamma=2.0, smooth=1e-5):
    """Focal loss of (B, K, H, W) class probabilities against (B, H, W) integer targets."""
    num_classes = probs.shape[1]
    p = probs.reshape(probs.shape[0], num_classes, -1).permute(0, 2, 1).reshape(-1, num_classes)
    onehot = F.one_hot(target.reshape(-1).long(), num_classes).to(p.dtype)
    if smooth:
        onehot = onehot.clamp(smooth / (num_classes - 1), 1.0 - smooth)
    pt = (onehot * p).sum(dim=1) + smooth
    return (-torch.pow(1 - pt, gamma) * pt.log()).mean()


def binary_dice_loss(probs, target, smooth=1.0):
    """Dice loss of (B, H, W) probabilities against (B, H, W) {0, 1} targets, averaged over images."""
    n = target.shape[0]
    p = probs.reshape(n, -1)
    g = target.reshape(n, -1).to(p.dtype)
    dice = (2 * (p * g).sum(dim=1) + smooth) / (p.sum(dim=1) + g.sum(dim=1) + smooth)
    return 1 - dice.sum() / n


def anomalyclip_losses(image_logits, labels, layer_maps, gt, lam=4.0, gamma=2.0):
    """All loss terms of one batch.

    Args:
        image_logits (Tensor): (B, 2) cos / temperature of the image features vs [normal, anomalous].
        labels (Tensor): (B,) image labels (1 = anomalous).
        layer_maps (Sequence[Tensor]): per layer (B, 2, H, W) state probabilities at the mask size.
        gt (Tensor): (B, H, W) {0, 1} masks.
        lam (float): weight of the segmentation terms. Default 4 (reference).
        gamma (float): focal exponent. Default 2.

    Returns:
        dict: ``loss_image`` (CE), ``loss_focal`` (lam x sum of focal), ``loss_dice`` (lam x sum of both
        dice terms), and the unweighted per-layer ``focal``, ``dice_anomalous``, ``dice_normal`` (L,).
    """
    focal = torch.stack([probability_focal_loss(m, gt, gamma) for m in layer_maps])
    dice_anomalous = torch.stack([binary_dice_loss(m[:, 1], gt) for m in layer_maps])
    dice_normal = torch.stack([binary_dice_loss(m[:, 0], 1 - gt) for m in layer_maps])
    return dict(loss_image=F.cross_entropy(image_logits, labels.long()),
                loss_focal=lam * focal.sum(), loss_dice=lam * (dice_anomalous + dice_normal).sum(),
                focal=focal.detach(), dice_anomalous=dice_anomalous.detach(), dice_normal=dice_normal.detach())
