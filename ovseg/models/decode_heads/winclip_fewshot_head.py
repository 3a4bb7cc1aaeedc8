"""WinCLIP+ (few-normal-shot WinCLIP): visual association with k normal reference images.

Reference behaviour (anomalib 2.7.0 ``WinClipModel`` with ``k_shot > 0``: ``setup``,
``_compute_few_shot_scores``, ``forward``; ``utils.visual_association_score``):

1. Memory (``setup(class_name, reference_images)``): the k references are encoded like a query; their
   **patch tokens** (the full-image pass after ``ln_post``, 896-d, *not* projected) and their **window
   embeddings** of every scale (projected, 640-d) are kept; the image embedding is discarded.
2. Association: a query patch token (window embedding) scores ``min over the bank (1 - cos) / 2``, the bank
   being every reference patch token (every reference window of the same scale) at any position. The
   distance is clamped at 0: rounding makes it about -6e-8 where a query equals a reference, and the
   original's harmonic mean of such opposite-signed tiny scores blows up (a score of exactly 0 gives a
   patch score of 0, as anomalib's ``nan_to_num(posinf=0)``); elsewhere nothing changes.
3. Few-shot map: the arithmetic mean of [patch scores on the grid, harmonic aggregation of the window
   scores of each scale] (the zero-shot branch uses a harmonic mean instead).
4. Combination: map = (zero-shot multi-scale map + few-shot map) / 2, image score = (zero-shot image
   score + max of the few-shot map) / 2; the map is upsampled bilinearly to the input size.

Without a memory the head is the zero-shot :class:`WinCLIPHead`. The bank search runs in chunks
(:mod:`ovseg.models.anomaly.nearest_reference`), so memory is bounded for any k
(:meth:`WinCLIPFewShotHead.memory_bytes`).
"""
import torch
import torch.nn.functional as F

from ovseg.models.anomaly.nearest_reference import bank_bytes, nearest_reference, search_bytes
from ovseg.models.anomaly.winclip import harmonic_aggregation, patch_embeddings, window_masks
from ovseg.models.decode_heads.winclip_head import WinCLIPHead
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS


@MODELS.register_module()
class WinCLIPFewShotHead(WinCLIPHead):
    """WinCLIP+ scores: zero-shot WinCLIP combined with the association to a normal-reference memory.

    Call graph::

        build_memory(backbone, reference_images)       k normal images -> patch / window banks
          └─ encode_images (WinCLIPHead's + patch_embeddings)
        forward(backbone, images, class_names, memory)
          ├─ encode_images                              image, window and patch embeddings
          └─ score(encoded, text, memory)
               ├─ WinCLIPHead.score                     zero-shot image score and multi-scale map
               ├─ few_shot_scores(encoded, memory)      association per scale, arithmetic mean
               └─ combination, bilinear upsampling

    Args:
        chunk_elements (int): most similarities held at once in the bank search. Default 2**24.
        **kwargs: :class:`WinCLIPHead` arguments (scales, temperature, prompts, window_batch).
    """

    uses_references = True

    def __init__(self, chunk_elements=1 << 24, **kwargs):
        super().__init__(**kwargs)
        self.chunk_elements = int(chunk_elements)

    @torch.no_grad()
    def encode_images(self, backbone, images):
        """:meth:`WinCLIPHead.encode_images` plus ``patch_embeddings`` (B, h * w, D)."""
        encoded = super().encode_images(backbone, images)
        encoded['patch_embeddings'] = patch_embeddings(backbone.clip.visual, images)
        return encoded

    @torch.no_grad()
    def build_memory(self, backbone, reference_images):
        """Memory of k normal reference images (anomalib ``setup``), float32.

        Args:
            backbone (OpenCLIPBackbone): a ViT CLIP.
            reference_images (Tensor): (k, 3, H, W) normalised images, k >= 1, the queries' size.

        Returns:
            dict: ``patch`` (k * h * w, D), ``windows`` {scale: (k * W_s, C)}, ``num_references`` k,
            ``grid`` (h, w) and ``input_size`` (H, W).
        """
        if reference_images.dim() != 4 or len(reference_images) == 0:
            raise ValueError(f'reference images must be a non-empty (k, 3, H, W) batch, got '
                             f'{tuple(reference_images.shape)}')
        enc = upcast(self.encode_images(backbone, reference_images))
        patch = enc['patch_embeddings']
        return dict(patch=patch.reshape(-1, patch.shape[-1]).float(),
                    windows={k: w.reshape(-1, w.shape[-1]).float() for k, w in enc['window_embeddings'].items()},
                    num_references=len(reference_images), grid=enc['grid'], input_size=enc['input_size'])

    def few_shot_scores(self, encoded, memory):
        """Association of encoded queries with a memory (float32, no autocast).

        Returns:
            dict: ``fs_patch_scores`` (B, h * w), ``fs_window_scores`` {k: (B, W_k)}, ``fs_scale_maps``
            (B, 1 + len(scales), h, w) [patch, scale maps...], ``fs_map`` (B, h, w) their arithmetic mean,
            ``fs_image_scores`` (B,) its maximum, and ``fs_nn_index`` {'patch' | k: (B, n)} bank indices.
        """
        grid = encoded['grid']
        if tuple(memory['grid']) != tuple(grid):
            raise ValueError(f'the reference memory was built on a {memory["grid"]} patch grid but the queries '
                             f'have {grid}: encode references and queries at the same input size')
        with float32_region(encoded['image_embeddings']):
            enc = upcast(encoded)
            patch, index = nearest_reference(enc['patch_embeddings'].float(), memory['patch'], self.chunk_elements)
            patch = patch.clamp(min=0)
            nn_index, window_scores = {'patch': index}, {}
            maps = [(patch / 2).reshape(-1, *grid)]
            for k in self.scales:
                dist, nn_index[k] = nearest_reference(enc['window_embeddings'][k].float(), memory['windows'][k],
                                                      self.chunk_elements)
                window_scores[k] = dist.clamp(min=0) / 2
                maps.append(harmonic_aggregation(window_scores[k], enc['masks'][k], grid))
            scale_maps = torch.stack(maps, dim=1)
            fs_map = scale_maps.mean(dim=1)
        return dict(fs_patch_scores=patch / 2, fs_window_scores=window_scores, fs_scale_maps=scale_maps,
                    fs_map=fs_map, fs_image_scores=fs_map.flatten(1).amax(dim=1), fs_nn_index=nn_index)

    def score(self, encoded, text_embeddings, memory=None):
        """Zero-shot scores (:meth:`WinCLIPHead.score`) combined with the few-shot ones when a memory is given.

        Returns:
            dict: without memory as :meth:`WinCLIPHead.score`; with it, also the zero-shot ``zs_image_scores``
            and ``zs_patch_map``, :meth:`few_shot_scores`'s entries, and ``image_scores``, ``patch_map``
            (combined grid map) and ``anomaly_map`` (B, H, W) of the combination.
        """
        out = super().score(encoded, text_embeddings)
        if memory is None:
            return out
        fs = self.few_shot_scores(encoded, memory)
        combined = (out['patch_map'] + fs['fs_map']) / 2
        out.update(fs, zs_image_scores=out['image_scores'], zs_patch_map=out['patch_map'], patch_map=combined,
                   image_scores=(out['image_scores'] + fs['fs_image_scores']) / 2,
                   anomaly_map=F.interpolate(combined[:, None], size=encoded['input_size'], mode='bilinear',
                                             align_corners=False)[:, 0])
        return out

    @torch.no_grad()
    def forward(self, backbone, images, class_names, memory=None):
        """Score a batch: (B, 3, H, W) images, B class names and an optional :meth:`build_memory` result."""
        return self.score(self.encode_images(backbone, images), self.text_embeddings(backbone, class_names),
                          memory)

    def memory_bytes(self, num_references, grid, width, embed_dim, num_queries=1):
        """(bank bytes, scoring bytes): the memory of ``num_references`` images (exact, float32) and an
        upper estimate of the extra memory of scoring ``num_queries`` images against it (the largest bank
        search, :func:`search_bytes`, 1 MiB per query for the grid maps and window scores, and 4 MiB for the
        matrix-product library's packing buffers).

        Args:
            num_references (int): k.
            grid (tuple[int, int]): patch grid (15 x 15 for ViT-B-16-plus at 240 px).
            width (int): token width D (896).
            embed_dim (int): embedding width C (640).
            num_queries (int): query images scored at once. Default 1.
        """
        parts = [(grid[0] * grid[1], width)]
        parts += [(window_masks(grid, k).shape[1], embed_dim) for k in self.scales]
        search = max(search_bytes(num_queries * p, c, num_references * p, self.chunk_elements) for p, c in parts)
        return bank_bytes(num_references, parts), search + (1 << 20) * num_queries + (4 << 20)
