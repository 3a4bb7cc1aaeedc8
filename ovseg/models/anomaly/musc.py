"""MuSc zero-shot anomaly scoring from unlabeled test images: LNAMD, mutual scoring (MSM) and RsCIN.

Reference behaviour (xrli-U/MuSc ``models/musc.py`` and ``models/modules``):

1. LNAMD(r): per layer and image, drop the class token, LayerNorm over the whole (C, h, w) block (eps
   1e-5, no affine), average each channel over r x r neighbourhoods with zero padding (r - 1) // 2
   (zeros count in the mean), then L2-normalise each patch feature.
2. MSM: for image i, patch p and every other image j, d_j(p) = min over patches q of j of
   ||z_i(p) - z_j(q)||; sort the N - 1 values and average those at positions [k_min, k_max) with
   k = int((N - 1) * fraction) (defaults 0 and 0.3). Mean over layers, then over r.
3. Maps: bilinear upsampling with ``align_corners=True`` (no smoothing); image score = map maximum.
4. RsCIN: min-max normalised image scores re-scored by row-normalised top-k similarity graphs of the
   global image features, averaged over the k list.

Memory: distances are computed one query image at a time against chunks of reference images, so the
temporary distance block holds at most ``chunk_elements`` floats (plus cdist's own temporaries of the
same size) and the per-query buffer L x N floats; besides the stored tokens only one layer's aggregated
features (N, L, C) are resident (LNAMD runs 16 images at a time). The peak is
linear in N: about ``4 * (layers + 1) * N * (L + 1) * C + 16 * N * H * W`` bytes (float32 tokens and
features, float64 maps of H x W) plus terms of O(N * L) and the distance block
B = min(max(1, chunk_elements // L**2), N - 1) * L**2 <= max(chunk_elements, L**2); the exact estimate
is :func:`memory_bound_bytes`.
"""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.vit_tokens import block_outputs


def interval_bounds(num_images, topmin_min=0.0, topmin_max=0.3):
    """(k_min, k_max) of the averaged nearest-image distances (fractions < 1 scale with N - 1)."""
    others = num_images - 1
    k_max = int(others * topmin_max) if topmin_max < 1 else int(topmin_max)
    k_min = int(others * topmin_min) if topmin_min < 1 else int(topmin_min)
    return (k_max, k_min) if k_max < k_min else (k_min, k_max)


def min_images(topmin_min=0.0, topmin_max=0.3, limit=10000):
    """Smallest number of images for which MSM averages at least one distance (5 with 0 and 0.3)."""
    for n in range(2, limit):
        k_min, k_max = interval_bounds(n, topmin_min, topmin_max)
        if k_max - k_min >= 1 and k_max <= n - 1:
            return n
    raise ValueError(f'no number of images below {limit} works with topmin ({topmin_min}, {topmin_max})')


def check_num_images(num_images, topmin_min=0.0, topmin_max=0.3):
    """(k_min, k_max) for ``num_images``; ValueError when MSM would average no distance (NaN)."""
    k_min, k_max = interval_bounds(num_images, topmin_min, topmin_max)
    if k_max - k_min < 1 or k_max > num_images - 1:
        raise ValueError(f'MuSc mutual scoring needs at least {min_images(topmin_min, topmin_max)} images of '
                         f'a category (it averages the int((N - 1) * {topmin_max}) nearest other images); '
                         f'got {num_images}')
    return k_min, k_max


def lnamd(tokens, r, grid=None):
    """Layer-normalised neighbourhood aggregation of one layer's tokens (before the L2 norm).

    Args:
        tokens (Tensor): (N, 1 + L, C) tokens, class token first, patches row-major.
        r (int): odd neighbourhood size (1 = no aggregation).
        grid (tuple[int, int], optional): (h, w) with h * w = L; default square.

    Returns:
        Tensor: (N, L, C).
    """
    if r < 1 or r % 2 == 0:
        raise ValueError(f'r must be a positive odd number, got {r}')
    n, length, c = tokens.shape[0], tokens.shape[1] - 1, tokens.shape[2]
    if grid is None:
        side = int(round(length ** 0.5))
        if side * side != length:
            raise ValueError(f'{length} patch tokens are not a square grid; pass grid=(h, w)')
        grid = (side, side)
    x = tokens[:, 1:].reshape(n, grid[0], grid[1], c).permute(0, 3, 1, 2)
    x = F.layer_norm(x, x.shape[1:], eps=1e-5)
    if r > 1:
        x = F.avg_pool2d(x, r, stride=1, padding=(r - 1) // 2, count_include_pad=True)
    return x.flatten(2).transpose(1, 2)


def lnamd_layers(layer_tokens, r, grid=None):
    """:func:`lnamd` of every layer stacked as (N, L, layers, C) (the reference's layout)."""
    return torch.stack([lnamd(t, r, grid) for t in layer_tokens], dim=2)


def scored_features(layer_tokens, r, layer, grid=None, image_chunk=16):
    """L2-normalised LNAMD features of one layer, (N, L, C), built ``image_chunk`` images at a time.

    The norm is taken in the reference's (n, L, layers, C) layout: float32 rounding of the norm depends
    on the memory layout, and cdist's cancellation would amplify that one ulp to ~1e-6 in the scores.
    Only one layer's features stay resident (the other layers of a chunk are dropped).
    """
    out = None
    for start in range(0, layer_tokens[0].shape[0], image_chunk):
        feats = lnamd_layers([t[start:start + image_chunk] for t in layer_tokens], r, grid)
        feats = (feats / feats.norm(dim=-1, keepdim=True))[:, :, layer]
        if out is None:  # filled in place: no second copy of the layer's features
            out = feats.new_empty(layer_tokens[0].shape[0], *feats.shape[1:])
        out[start:start + len(feats)] = feats
    return out


def mutual_scores(features, topmin_min=0.0, topmin_max=0.3, chunk_elements=1 << 24):
    """MSM: score every patch against all other images.

    Args:
        features (Tensor): (N, L, C) L2-normalised patch features of one layer.
        topmin_min (float): lower fraction of the sorted nearest-image distances. Default 0.
        topmin_max (float): upper fraction. Default 0.3.
        chunk_elements (int): most distances held at once (L x L per reference image). Default 2**24.

    Returns:
        Tensor: (N, L) float64 scores.

    Raises:
        ValueError: fewer images than :func:`min_images` (the reference would return NaN).
    """
    n, length, c = features.shape
    k_min, k_max = check_num_images(n, topmin_min, topmin_max)
    per_chunk = max(1, int(chunk_elements) // (length * length))
    out = torch.empty(n, length, dtype=torch.float64, device=features.device)
    for i in range(n):
        others = torch.cat([torch.arange(i), torch.arange(i + 1, n)]).to(features.device)
        nearest = features.new_empty(length, n - 1)
        for start in range(0, n - 1, per_chunk):
            idx = others[start:start + per_chunk]
            dist = torch.cdist(features[i:i + 1], features[idx].reshape(1, -1, c))
            nearest[:, start:start + len(idx)] = dist.reshape(length, len(idx), length).amin(dim=-1)
        kept = nearest.sort(dim=1).values[:, k_min:k_max]
        out[i] = kept.mean(dim=1).double()
    return out


def rscin(scores, cls_tokens, k_list=(1, 2, 3)):
    """Re-score image scores over a top-k similarity graph of global image features.

    Args:
        scores (Tensor): (N,) float64 image scores.
        cls_tokens (Tensor, optional): (N, D) L2-normalised global features; None returns ``scores``.
        k_list (Sequence[int]): neighbourhood sizes averaged (MVTec (1, 2, 3), VisA (1, 8, 9)); a list
            holding 0 returns ``scores`` unchanged, as the reference does.

    Returns:
        Tensor: (N,) float32 re-scored values (or ``scores`` unchanged).

    Raises:
        ValueError: a k larger than the number of images.
    """
    if cls_tokens is None or 0 in k_list:
        return scores
    n = scores.shape[0]
    if max(k_list) > n:
        raise ValueError(f'RsCIN k_list {tuple(k_list)} needs at least {max(k_list)} images; got {n}')
    span = scores.max() - scores.min()
    norm = (scores - scores.min()) / span if span > 0 else torch.zeros_like(scores)
    sim = cls_tokens.float() @ cls_tokens.float().t()
    norm = norm.float().unsqueeze(-1)
    out = []
    for k in k_list:
        keep = torch.zeros_like(sim).scatter_(1, sim.topk(k, dim=1).indices, 1.0)
        masked = sim * keep
        out.append(((1.0 / masked.sum(dim=1, keepdim=True)) * masked) @ norm)
    return torch.cat(out, dim=-1).mean(dim=-1)


def musc_scores(layer_tokens, cls_tokens=None, image_size=None, r_list=(1, 3, 5), topmin_min=0.0,
                topmin_max=0.3, k_list=(1, 2, 3), grid=None, chunk_elements=1 << 24):
    """The MuSc pipeline on patch tokens of a whole category.

    Args:
        layer_tokens (Sequence[Tensor]): per layer (N, 1 + L, C) tokens.
        cls_tokens (Tensor, optional): (N, D) normalised global features for RsCIN.
        image_size (int | tuple[int, int], optional): map output size; default the patch grid.
        r_list (Sequence[int]): LNAMD neighbourhood sizes. Default (1, 3, 5).
        topmin_min, topmin_max (float): MSM interval. Defaults 0 and 0.3.
        k_list (Sequence[int]): RsCIN k list. Default (1, 2, 3).
        grid (tuple[int, int], optional): (h, w) patch grid; default square.
        chunk_elements (int): distance chunk size of :func:`mutual_scores`.

    Returns:
        dict: ``msm`` {r: (layers, N, L) float64}, ``map_patch`` (N, h, w) float64, ``anomaly_maps``
        (N, H, W) float64, ``ac_score`` (N,) float64 (map maximum), ``image_scores`` (N,) RsCIN scores.
    """
    n, length = layer_tokens[0].shape[0], layer_tokens[0].shape[1] - 1
    check_num_images(n, topmin_min, topmin_max)
    grid = grid or (int(round(length ** 0.5)),) * 2
    msm = {}
    for r in r_list:
        msm[r] = torch.stack([mutual_scores(scored_features(layer_tokens, r, layer, grid), topmin_min,
                                            topmin_max, chunk_elements) for layer in range(len(layer_tokens))])
    map_patch = torch.stack([m.mean(dim=0) for m in msm.values()]).mean(dim=0).reshape(n, *grid)
    size = grid if image_size is None else ((image_size,) * 2 if isinstance(image_size, int) else image_size)
    maps = F.interpolate(map_patch[:, None], size=tuple(size), mode='bilinear', align_corners=True)[:, 0]
    ac_score = maps.flatten(1).amax(dim=1)
    return dict(msm=msm, map_patch=map_patch, anomaly_maps=maps, ac_score=ac_score,
                image_scores=rscin(ac_score, cls_tokens, k_list))


def memory_bound_bytes(num_images, num_patches, channels, num_layers, map_size, chunk_elements=1 << 24,
                       num_radii=3, image_chunk=16):
    """Upper estimate of the tensors :func:`musc_scores` holds at its peak, in bytes (float32 features).

    Terms: the stored tokens (``layers`` x N x (L + 1) x C) and one layer's scored features (N x L x C);
    the LNAMD transients of one image chunk (about 4 copies of ``image_chunk`` x L x layers x C); per
    query the nearest-image distances with their sort (L x N values + int64 indices); the float64 scores
    of every (r, layer) (``num_radii`` x layers x N x L); three copies of one distance block
    B = min(max(1, chunk_elements // L**2), N - 1) x L**2 (cdist's operands and result); and the float64
    maps twice (N x H x W, upsampling output and its copy). Allocator and library overheads are not
    included.

    Args:
        num_images (int): N, images of the category.
        num_patches (int): L, patches per image.
        channels (int): C, token width.
        num_layers (int): scored layers.
        map_size (tuple[int, int]): (H, W) of the output maps.
        chunk_elements (int): distance chunk of :func:`mutual_scores`. Default 2**24.
        num_radii (int): LNAMD radii. Default 3.
        image_chunk (int): images per LNAMD chunk of :func:`scored_features`. Default 16.
    """
    n, length = num_images, num_patches
    features = 4 * (num_layers * n * (length + 1) * channels + n * length * channels)
    lnamd_chunk = 4 * 4 * min(image_chunk, n) * length * num_layers * channels
    per_query = 12 * length * n + 8 * num_radii * num_layers * n * length
    block = min(max(1, chunk_elements // (length * length)), n - 1) * length * length
    return features + lnamd_chunk + per_query + 4 * 3 * block + 16 * n * map_size[0] * map_size[1]


def vit_block_tokens(visual, images, block_indices):
    """Outputs of chosen transformer blocks and the projected global embedding of an open_clip ViT.

    Args:
        visual (VisionTransformer): open_clip vision tower.
        images (Tensor): (B, 3, H, W) normalised images (H, W multiples of the patch size).
        block_indices (Sequence[int]): 0-based block indices (negative counts from the end); MuSc's
            ``feature_layers`` (ViT-L/14: 5, 11, 17, 23).

    Returns:
        tuple: list of (B, 1 + h * w, D) block outputs (class token first), (B, E) global embedding
        (not normalised) and the grid (h, w).
    """
    return block_outputs(visual, images, block_indices)
