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

from ovseg.models.anomaly.winclip import (anomaly_probability, encode_class_token, harmonic_aggregation,
                                          tokens_with_position, window_embeddings, window_masks)
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS


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
