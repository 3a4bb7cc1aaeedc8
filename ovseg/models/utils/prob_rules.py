"""Test-time rules on class scores at feature resolution (MaskCLIP+ kspd, background rule)."""
import torch
import torch.nn.functional as F


def prompt_denoise(logits, thresh):
    """MaskCLIP+ prompt denoising: drop classes whose maximum probability over the map is below ``thresh``.

    Args:
        logits (Tensor): (B, K, h, w) scaled logits.
        thresh (float): 0.5 in the published configs.

    Returns:
        Tensor: logits with dropped classes set to -1e4 (MaskCLIP sets their cosine to -100).
    """
    probs = logits.softmax(dim=1)
    dropped = probs.flatten(2).amax(dim=-1) < thresh
    return logits.masked_fill(dropped[:, :, None, None], -1e4)


def key_smoothing(probs, keys, thresh, key_norm='spatial'):
    """MaskCLIP+ key smoothing: low-confidence locations take the key-affinity-weighted sum of probabilities.

    Args:
        probs (Tensor): (B, K, h, w) class probabilities.
        keys (Tensor): (B, D, h, w) MaskCLIP's keys: ViT ``out_proj(k(ln_1 x))`` of the last block (the
            output projection with its bias applied to the keys, as MaskCLIP's ``vit.py``), ResNet the
            attention pool's key projection at every position.
        thresh (float): locations whose top probability is below it are smoothed (1.0 = all, published).
        key_norm (str): 'spatial' normalises each key channel over locations, as the original MaskCLIP
            code does (``F.normalize`` on an (N, HW, C) tensor, dim 1); 'channel' uses cosine affinity.
    """
    b, k, h, w = probs.shape
    p = probs.flatten(2).transpose(1, 2)
    key = keys.float().flatten(2).transpose(1, 2)
    key = F.normalize(key, dim=1 if key_norm == 'spatial' else 2)
    smoothed = key @ key.transpose(1, 2) @ p
    low = p.amax(dim=-1, keepdim=True) < thresh
    p = torch.where(low, smoothed, p)
    return p.transpose(1, 2).reshape(b, k, h, w)


def apply_background(probs, index, thresh=None, objectness=None, objectness_thresh=0.5):
    """Set the background channel to 1 where the foreground is uncertain.

    A location becomes background when its top probability is below ``thresh`` (if given) and, when an
    objectness map is given (CLIP-DINOiser's background head), the location is not a confident object
    (objectness <= ``objectness_thresh``).

    Args:
        probs (Tensor): (B, K, h, w) probabilities.
        index (int): background class index.
        thresh (float, optional): δ (0.99 in CLIP-DINOiser).
        objectness (Tensor, optional): (B, 1, h, w) in [0, 1].
        objectness_thresh (float): default 0.5.
    """
    if thresh is None and objectness is None:
        return probs  # names-only background: the class competes through its synonyms, nothing to force
    cond = torch.ones_like(probs[:, 0], dtype=torch.bool)
    if thresh is not None:
        cond &= probs.amax(dim=1) < thresh
    if objectness is not None:
        cond &= ~(objectness[:, 0] > objectness_thresh)
    probs = probs.clone()
    probs[:, index] = torch.where(cond, torch.ones_like(probs[:, index]), probs[:, index])
    return probs
