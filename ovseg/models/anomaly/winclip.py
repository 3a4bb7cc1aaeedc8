"""WinCLIP building blocks: windows of a patch grid, window and patch embeddings, window anomaly
probabilities and their harmonic aggregation.

The head that runs them is :class:`ovseg.models.decode_heads.WinCLIPHead` (zero-shot) and
:class:`ovseg.models.decode_heads.WinCLIPFewShotHead` (WinCLIP+).
"""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.vit_tokens import encode_class_token, tokens_with_position
from ovseg.models.utils.precision import float32_region, upcast


def window_masks(grid_size, kernel_size, stride=1):
    """Patch indices of every k x k window of a grid.

    Args:
        grid_size (tuple[int, int]): (h, w) patch grid.
        kernel_size (int): window side k.
        stride (int): window stride. Default 1.

    Returns:
        Tensor: (k * k, num_windows) int64 row-major patch indices; windows ordered row-major by their
        top-left patch (``torch.nn.functional.unfold`` order).
    """
    h, w = grid_size
    if not 1 <= kernel_size <= min(h, w):
        raise ValueError(f'window size {kernel_size} does not fit the {h}x{w} patch grid')
    grid = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
    return F.unfold(grid, kernel_size=kernel_size, stride=stride)[0].long()


def harmonic_aggregation(window_scores, masks, grid_size):
    """Per-patch harmonic mean of the scores of the windows covering the patch.

    Args:
        window_scores (Tensor): (B, num_windows) scores in (0, 1].
        masks (Tensor): (k * k, num_windows) patch indices of each window (:func:`window_masks`).
        grid_size (tuple[int, int]): (h, w).

    Returns:
        Tensor: (B, h, w); patches no window covers get 0, and so do patches covered by a window of score 0
        (anomalib's ``nan_to_num(posinf=0)``; a few-shot distance is 0 where a query equals a reference).
    """
    h, w = grid_size
    cover = torch.zeros(masks.shape[1], h * w, dtype=window_scores.dtype, device=window_scores.device)
    cover.scatter_(1, masks.t().to(window_scores.device), 1.0)  # (num_windows, h*w) window covers patch
    inv = 1.0 / window_scores
    zero = torch.isinf(inv)  # inf * 0 in the product would give NaN: sum the finite terms, then set inf
    inv_sum = torch.where(zero, torch.zeros_like(inv), inv) @ cover
    inv_sum = inv_sum.masked_fill((zero.to(cover.dtype) @ cover) > 0, float('inf'))
    count = cover.sum(dim=0)
    patch = torch.where(count > 0, count / inv_sum, torch.zeros_like(inv_sum))
    return patch.reshape(-1, h, w)


def anomaly_probability(embeddings, text_embeddings, temperature=0.07):
    """Anomalous entry of softmax over cosine similarities to [normal, anomalous] text embeddings.

    Args:
        embeddings (Tensor): (B, ..., C) image or window embeddings.
        text_embeddings (Tensor): (2, C) shared, or (B, 2, C) one pair per image.
        temperature (float): softmax temperature (WinCLIP: a fixed 0.07, not CLIP's logit scale).

    Returns:
        Tensor: (B, ...) probabilities (float32 for half-precision inputs; computed without autocast).
    """
    with float32_region(embeddings):
        emb = F.normalize(upcast(embeddings), dim=-1)
        text = F.normalize(upcast(text_embeddings), dim=-1)
        if text.dim() == 2:
            text = text.expand(emb.shape[0], 2, -1)
        flat = emb.reshape(emb.shape[0], -1, emb.shape[-1])
        sims = torch.bmm(flat, text.transpose(1, 2)) / temperature
        return sims.softmax(dim=-1)[..., 1].reshape(emb.shape[:-1])


def window_embeddings(visual, tokens, masks, window_batch=2048):
    """Embeddings of every window: class token + the window's patch tokens through the tower.

    Args:
        visual (VisionTransformer): open_clip vision tower.
        tokens (Tensor): (B, 1 + h * w, D) from :func:`tokens_with_position`.
        masks (Tensor): (k * k, W) patch indices of each window.
        window_batch (int): windows (over all images) per transformer call; bounds memory. Default 2048.

    Returns:
        Tensor: (B, W, C).
    """
    b, _, d = tokens.shape
    index = torch.cat([masks.new_zeros(1, masks.shape[1]), masks + 1]).t().to(tokens.device)  # (W, 1+k*k)
    windows = tokens[:, index.reshape(-1)].reshape(b * index.shape[0], index.shape[1], d)
    out = torch.cat([encode_class_token(visual, windows[i:i + window_batch])
                     for i in range(0, len(windows), window_batch)])
    return out.reshape(b, index.shape[0], -1)


def patch_embeddings(visual, images):
    """Patch tokens of the full-image pass after ``ln_post`` (not projected): (B, h * w, D).

    This is the tower's plain forward (anomalib reads the same tokens from ``encode_image`` with
    ``output_tokens``); it repeats the image pass of :meth:`WinCLIPHead.encode_images` (one pass beside the
    365 window passes of ViT-B-16-plus at 240 px) until the shared ViT walker returns patch tokens too.
    """
    tokens, _ = tokens_with_position(visual, images)
    x = visual.transformer(visual.ln_pre(visual.patch_dropout(tokens)))
    return visual.ln_post(x[:, 1:])
