"""WinCLIP zero-shot anomaly scoring: image, window (k x k patches) and harmonic multi-scale maps.

Reference behaviour (anomalib ``WinClipModel``, zero-shot): tokens are taken after the positional
embedding; a window embedding runs the class token plus the k x k patch tokens of one window (their own
positional embeddings kept) through ``ln_pre`` -> transformer -> ``ln_post`` (class token) -> ``proj``.
A window's anomaly probability is the anomalous entry of softmax([cos(v, t_n), cos(v, t_a)] / 0.07); a
patch gets the harmonic mean of the windows covering it; the image score (broadcast) and the per-scale
maps are combined by a harmonic mean; the grid map is upsampled bilinearly to the input size.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.backbones.vit_tokens import encode_class_token, tokens_with_position
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS


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


@MODELS.register_module()
class WinCLIPHead(nn.Module):
    """WinCLIP zero-shot scores from an :class:`OpenCLIPBackbone` with a ViT tower.

    Call graph::

        forward(backbone, images, class_names)
          ├─ text_embeddings(backbone, names)        (B, 2, C) per class name (cached prompt ensemble)
          ├─ encode_images(backbone, images)
          │    ├─ tokens_with_position(visual, images)  tokens after the positional embedding
          │    ├─ encode_class_token(...)               image embedding
          │    └─ window_embeddings(...) per scale      class token + k x k patches through the tower
          └─ score(encoded, text)
               ├─ anomaly_probability                   image score, window scores
               ├─ harmonic_aggregation per scale        window scores -> patch map
               └─ harmonic mean over [image score, scale maps] -> upsample to the input size

    Args:
        scales (Sequence[int]): window sizes k in patches. Default (2, 3).
        temperature (float): softmax temperature. Default 0.07.
        prompts (dict): :class:`AnomalyStatePrompts` config. Default WinCLIP's ensemble, unnormalised mean.
        window_batch (int): windows per transformer call. Default 2048.
    """

    timed_stages = (('text_embeddings', None), ('encode_images', None), ('score', None))  # StageTimer

    def __init__(self, scales=(2, 3), temperature=0.07, prompts=dict(type='AnomalyStatePrompts'),
                 window_batch=2048):
        super().__init__()
        self.scales = tuple(int(s) for s in scales)
        self.temperature = float(temperature)
        self.prompts = MODELS.build(prompts)
        self.window_batch = int(window_batch)

    def text_embeddings(self, backbone, class_names):
        """(B,) class names -> (B, 2, C) [normal, anomalous] float32 text embeddings (no autocast)."""
        with float32_region(next(backbone.clip.parameters())):
            return torch.stack([self.prompts(backbone, name) for name in class_names])

    @torch.no_grad()
    def encode_images(self, backbone, images):
        """Image and window embeddings of a batch (independent of the class names).

        Args:
            backbone (OpenCLIPBackbone): a ViT CLIP.
            images (Tensor): (B, 3, H, W) normalised images.

        Returns:
            dict: ``image_embeddings`` (B, C), ``window_embeddings`` {k: (B, W_k, C)}, ``masks``
            {k: (k * k, W_k)}, ``grid`` (h, w), ``input_size`` (H, W).
        """
        if backbone.kind != 'vit':
            raise NotImplementedError(f'WinCLIP needs a ViT CLIP, got a {backbone.kind} tower')
        visual = backbone.clip.visual
        tokens, grid = tokens_with_position(visual, images)
        masks = {k: window_masks(grid, k) for k in self.scales}
        windows = {k: window_embeddings(visual, tokens, masks[k], self.window_batch) for k in self.scales}
        return dict(image_embeddings=encode_class_token(visual, tokens), window_embeddings=windows,
                    masks=masks, grid=grid, input_size=tuple(images.shape[-2:]))

    def score(self, encoded, text_embeddings):
        """Scores and maps of encoded images against text embeddings.

        Args:
            encoded (dict): output of :meth:`encode_images`.
            text_embeddings (Tensor): (2, C) or (B, 2, C) [normal, anomalous].

        Returns:
            dict: ``image_scores`` (B,), ``window_scores`` {k: (B, W_k)}, ``scale_maps``
            (B, 1 + len(scales), h, w) [image score broadcast, scale maps...], ``patch_map`` (B, h, w)
            harmonic mean over scales, ``anomaly_map`` (B, H, W) bilinear upsampling of ``patch_map``.
            Computed in float32 without autocast (half-precision embeddings are cast first).
        """
        with float32_region(encoded['image_embeddings']):
            return self._score(upcast(encoded), upcast(text_embeddings))

    def _score(self, encoded, text_embeddings):
        grid = encoded['grid']
        image_scores = anomaly_probability(encoded['image_embeddings'], text_embeddings, self.temperature)
        maps, window_scores = [image_scores.view(-1, 1, 1).expand(-1, *grid)], {}
        for k in self.scales:
            window_scores[k] = anomaly_probability(encoded['window_embeddings'][k], text_embeddings,
                                                   self.temperature)
            maps.append(harmonic_aggregation(window_scores[k], encoded['masks'][k], grid))
        scale_maps = torch.stack(maps, dim=1)
        patch_map = scale_maps.shape[1] / (1.0 / scale_maps).sum(dim=1)
        anomaly_map = F.interpolate(patch_map[:, None], size=encoded['input_size'], mode='bilinear',
                                    align_corners=False)[:, 0]
        return dict(image_scores=image_scores, window_scores=window_scores, scale_maps=scale_maps,
                    patch_map=patch_map, anomaly_map=anomaly_map)

    @torch.no_grad()
    def forward(self, backbone, images, class_names):
        """Score a batch: (B, 3, H, W) images and B class names -> :meth:`score`'s dict."""
        return self.score(self.encode_images(backbone, images), self.text_embeddings(backbone, class_names))
