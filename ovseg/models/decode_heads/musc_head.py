"""MuSc head: zero-shot anomaly scores of a whole category batch by mutual scoring of its images.

Reference: xrli-U/MuSc (``models/musc.py``); the scoring itself (LNAMD, MSM, RsCIN) and its memory bound
are in :mod:`ovseg.models.anomaly.musc`.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.anomaly.musc import min_images, musc_scores, vit_block_tokens
from ovseg.models.utils.precision import float32_region
from ovseg.registry import MODELS


@MODELS.register_module()
class MuScHead(nn.Module):
    """MuSc scores for a batch that holds **all** test images of one category.

    The anomaly segmentor hands the whole category batch (see ``CategoryBatchSampler``); features are
    extracted in mini-batches of ``extract_batch`` images, then every image is scored against all
    others (:func:`musc_scores`).

    Args:
        layers (Sequence[int]): 0-based ViT blocks whose outputs are scored. Default (5, 11, 17, 23).
        r_list (Sequence[int]): LNAMD neighbourhood sizes. Default (1, 3, 5).
        topmin_min (float): lower fraction of the MSM interval. Default 0.
        topmin_max (float): upper fraction of the MSM interval. Default 0.3.
        rscin_k (Sequence[int]): RsCIN k list (MVTec (1, 2, 3), VisA (1, 8, 9); (0,) disables it).
        extract_batch (int): images per backbone call. Default 8.
        chunk_elements (int): distance chunk of the mutual scoring. Default 2**24.
        feature_device (str, optional): where the category's tokens are stored ('cpu' saves accelerator
            memory); default the images' device.
    """

    needs_category_batch = True

    timed_stages = (('extract', None),)  # StageTimer

    def __init__(self, layers=(5, 11, 17, 23), r_list=(1, 3, 5), topmin_min=0.0, topmin_max=0.3,
                 rscin_k=(1, 2, 3), extract_batch=8, chunk_elements=1 << 24, feature_device=None):
        super().__init__()
        self.layers, self.r_list = tuple(layers), tuple(r_list)
        self.topmin_min, self.topmin_max = float(topmin_min), float(topmin_max)
        self.rscin_k = tuple(rscin_k)
        self.extract_batch, self.chunk_elements = int(extract_batch), int(chunk_elements)
        self.feature_device = feature_device

    @property
    def min_images(self):
        """Smallest category batch MuSc can score."""
        return max(min_images(self.topmin_min, self.topmin_max), max(self.rscin_k, default=0))

    @torch.no_grad()
    def extract(self, backbone, images):
        """(N, 3, H, W) -> per layer (N, 1 + L, D) tokens, (N, E) normalised global features, grid."""
        if backbone.kind != 'vit':
            raise NotImplementedError(f'MuSc needs a ViT CLIP, got a {backbone.kind} tower')
        device = self.feature_device or images.device
        layers, globals_, grid = [[] for _ in self.layers], [], None
        for start in range(0, len(images), self.extract_batch):
            tokens, pooled, grid = vit_block_tokens(backbone.clip.visual,
                                                    images[start:start + self.extract_batch], self.layers)
            for store, t in zip(layers, tokens):
                store.append(t.float().to(device))
            globals_.append(F.normalize(pooled.float(), dim=-1).to(device))
        return [torch.cat(t) for t in layers], torch.cat(globals_), grid

    @torch.no_grad()
    def forward(self, backbone, images, class_names=None):
        """Score one category.

        Args:
            backbone (OpenCLIPBackbone): a ViT CLIP.
            images (Tensor): (N, 3, H, W) every test image of one category.
            class_names: unused (MuSc uses no text).

        Returns:
            dict: ``image_scores`` (N,) RsCIN scores, ``ac_score`` (N,) map maxima, ``patch_map``
            (N, h, w) and ``anomaly_map`` (N, H, W) float32.
        """
        if len(images) < self.min_images:
            raise ValueError(f'MuSc scores a category from its own test images and needs at least '
                             f'{self.min_images} of them in one batch; got {len(images)}. Use '
                             f"batch_sampler=dict(type='CategoryBatchSampler') in the test dataloader.")
        layer_tokens, cls_tokens, grid = self.extract(backbone, images)  # float32 (cast after the tower)
        with float32_region(images):  # the tower may run under autocast, the scoring never does
            out = musc_scores(layer_tokens, cls_tokens, tuple(images.shape[-2:]), self.r_list,
                              self.topmin_min, self.topmin_max, self.rscin_k, grid, self.chunk_elements)
        return dict(image_scores=out['image_scores'].float().to(images.device),
                    ac_score=out['ac_score'].to(images.device), patch_map=out['map_patch'].float(),
                    anomaly_map=out['anomaly_maps'].float().to(images.device))
