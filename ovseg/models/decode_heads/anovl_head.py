"""AnoVL training-free anomaly localisation: V-V attention tokens + domain-aware state prompts.

Reference: hq-deng/AnoVL (``vl_test.py``, its vendored ``open_clip``), Deng et al., arXiv 2308.15939.

Pipeline of :class:`AnoVLHead` for a (B, 3, H, W) batch (240 px, ViT-B-16-plus-240 in the paper):

1. Text: per class, the mean of the **unnormalised** embeddings of the 462 normal (and 462 anomalous)
   domain-aware sentences (:mod:`ovseg.text.anovl_prompts`), L2-normalised -> (C, 2).
2. Vision: every block is dual-path from the first (:mod:`ovseg.models.backbones.value_value`); the V-V tokens of
   block ``layer`` (the last) drop the class token, go through ``ln_post`` and ``proj`` -> (B, h, w, C).
3. Map: softmax over [cos(t, normal), cos(t, anomalous)] **without temperature** -> anomalous
   probability (B, 1, h, w); replicate-pad 1 and 3x3 mean; bilinear to (H, W) with
   ``align_corners=True`` (no Gaussian smoothing).
4. Image score: the same softmax for the class token of the original path (``ln_post``, ``proj``) of
   each of 22 augmented views (:mod:`ovseg.models.anomaly.anovl_views`), averaged over views.
5. Optional (``adapter=dict(type='AnoVLTestTimeAdapter')``): adapt the local tokens of each image before
   step 3 (:mod:`ovseg.models.anomaly.anovl_adapter`).

The reference's returned per-layer token list is aliased by in-place updates (every V-V entry holds
the last block's V-V tokens with the original path's class token written into row 0, every
original-path entry but the last the next block's post-attention state); only the last V-V entry's
patch tokens are used, and this port returns true per-layer values instead
(:meth:`AnoVLHead.encode_tokens`; the parity test rebuilds the aliased list from them).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.anomaly.anovl_views import anovl_views
from ovseg.models.backbones.value_value import dual_path_transformer, embed_tokens, project_tokens
from ovseg.models.backbones.vit_towers import tower_depth
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS


@MODELS.register_module()
class AnoVLHead(nn.Module):
    """AnoVL zero-shot anomaly maps and image scores from an :class:`OpenCLIPBackbone` ViT.

    Call graph::

        forward(backbone, images, class_names)
          ├─ text_features(backbone, names)        (B, C, 2) normalised, per class name (cached)
          ├─ encode_tokens(backbone, images)       dual-path ViT -> projected V-V tokens (B, h, w, C)
          ├─ adapter (optional)                    per image, per-image optimisation
          ├─ score_tokens(tokens, text)            softmax, 3x3 mean, bilinear upsampling
          └─ image_scores(backbone, images, text)  class token of 22 views (or of the image only)

    Args:
        prompts (dict): text-embedding module config. Default :class:`AnoVLStatePrompts`.
        layer (int): 1-based block whose V-V tokens make the map; -1 = the last block. Default -1.
        num_dual (int, optional): number of last blocks with the V-V path; None = all (AnoVL).
        temperature (float): softmax temperature over the two cosines. Default 1.0 (AnoVL has none).
        smooth_kernel (int): side of the mean filter on the patch map (replicate padding); 1 = none.
            Default 3.
        align_corners (bool): of the bilinear upsampling. Default True (AnoVL).
        augment_views (bool): image score averaged over the 22 AnoVL views; False = the image only.
            Default True.
        view_batch (int): views per vision-tower call for the image score. Default 22.
        plain_softmax (bool): AnoVL's ``exp / sum`` softmax in the original path. Default True.
        adapter (dict, optional): ``AnoVLTestTimeAdapter`` config; None = training-free. Default None.
    """

    timed_stages = (('text_features', None), ('encode_tokens', None), ('adapt', None),  # StageTimer
                    ('score_tokens', None), ('image_scores', None))

    def __init__(self, prompts=dict(type='AnoVLStatePrompts'), layer=-1, num_dual=None, temperature=1.0,
                 smooth_kernel=3, align_corners=True, augment_views=True, view_batch=22, plain_softmax=True,
                 adapter=None):
        super().__init__()
        self.prompts = prompts if isinstance(prompts, nn.Module) else MODELS.build(prompts)
        self.layer = int(layer)
        self.num_dual = num_dual
        self.temperature = float(temperature)
        self.smooth_kernel = int(smooth_kernel)
        self.align_corners = bool(align_corners)
        self.augment_views = bool(augment_views)
        self.view_batch = int(view_batch)
        self.plain_softmax = bool(plain_softmax)
        self.adapter = MODELS.build(adapter) if isinstance(adapter, dict) else adapter

    def _visual(self, backbone):
        if backbone.kind != 'vit':
            raise NotImplementedError(f'AnoVL needs a ViT CLIP, got a {backbone.kind} tower')
        return backbone.clip.visual

    def text_features(self, backbone, class_names):
        """(B,) class names -> (B, C, 2) L2-normalised [normal, anomalous] float32 columns (no autocast)."""
        with float32_region(next(backbone.clip.parameters())):
            return torch.stack([F.normalize(self.prompts(backbone, name), dim=-1).t()
                                for name in class_names])

    def _depth_args(self, visual):
        depth = tower_depth(visual)
        layer = depth if self.layer == -1 else self.layer
        num_dual = depth if self.num_dual is None else int(self.num_dual)
        return layer, num_dual

    @torch.no_grad()
    def encode_tokens(self, backbone, images, taps=(), record_mid=False):
        """Projected V-V tokens of the map layer and the raw dual-path outputs of ``taps``.

        Args:
            backbone (OpenCLIPBackbone): a ViT CLIP.
            images (Tensor): (B, 3, H, W) normalised images.
            taps (Sequence[int]): extra 1-based blocks whose raw (B, N, D) tokens to return.
            record_mid (bool): also return each dual block's original path after its attention
                residual (what the reference's aliased token list holds). Default False.

        Returns:
            dict: ``tokens`` (B, h, w, C) projected V-V tokens of ``layer`` (not normalised),
            ``cls_ori`` (B, C) projected original-path class token of the last block, ``vv`` / ``ori``
            / ``mid`` {block: (B, N, D)}, ``last_ori`` (B, N, D), ``grid`` (h, w).
        """
        visual = self._visual(backbone)
        layer, num_dual = self._depth_args(visual)
        x, grid = embed_tokens(visual, images)
        out = dual_path_transformer(visual, x, num_dual, taps=tuple(sorted({layer, *taps})),
                                    use_plain_softmax=self.plain_softmax, record_mid=record_mid)
        tokens = project_tokens(visual, out['vv'][layer][:, 1:]).reshape(images.shape[0], *grid, -1)
        cls_ori = project_tokens(visual, out['last_ori'][:, 0])
        return dict(tokens=tokens, cls_ori=cls_ori, vv=out['vv'], ori=out['ori'], mid=out['mid'],
                    last_ori=out['last_ori'], grid=grid)

    def state_probs(self, features, text):
        """softmax(cos / temperature) over [normal, anomalous]: (B, ..., C), (B, C, 2) -> (B, ..., 2).

        Float32 without autocast (half-precision features are cast first).
        """
        with float32_region(features):
            feats = F.normalize(upcast(features), dim=-1)
            flat = feats.reshape(feats.shape[0], -1, feats.shape[-1])
            cos = torch.bmm(flat, text.to(flat.dtype)).reshape(*feats.shape[:-1], 2)
            return (cos / self.temperature).softmax(dim=-1), cos

    def score_tokens(self, tokens, text, input_size):
        """Anomaly maps from projected tokens.

        Args:
            tokens (Tensor): (B, h, w, C) projected local tokens.
            text (Tensor): (B, C, 2) normalised text features.
            input_size (tuple[int, int]): (H, W) of the output map.

        Returns:
            dict: ``cos`` (B, h, w, 2), ``prob_anomalous`` and ``prob_pooled`` (B, 1, h, w),
            ``anomaly_map`` (B, H, W); float32, without autocast.
        """
        with float32_region(tokens):
            return self._score_tokens(upcast(tokens), text, input_size)

    def _score_tokens(self, tokens, text, input_size):
        probs, cos = self.state_probs(tokens, text)
        prob = probs[..., 1][:, None]
        pooled = prob
        if self.smooth_kernel > 1:
            pad = self.smooth_kernel // 2
            pooled = F.avg_pool2d(F.pad(prob, (pad, pad, pad, pad), mode='replicate'), self.smooth_kernel,
                                  stride=1, padding=0, count_include_pad=False)
        amap = F.interpolate(pooled, size=tuple(input_size), mode='bilinear', align_corners=self.align_corners)
        return dict(cos=cos, prob_anomalous=prob, prob_pooled=pooled, anomaly_map=amap[:, 0])

    @torch.no_grad()
    def class_tokens(self, backbone, images):
        """(N, 3, H, W) -> (N, C) projected class tokens of the original path (plain CLIP, AnoVL softmax)."""
        visual = self._visual(backbone)
        x, _ = embed_tokens(visual, images)
        out = dual_path_transformer(visual, x, tower_depth(visual), with_vv=False,
                                    use_plain_softmax=self.plain_softmax)
        return project_tokens(visual, out['last_ori'][:, 0])

    @torch.no_grad()
    def image_scores(self, backbone, images, text, cls_tokens=None):
        """Image scores: mean anomalous probability of the class token over the views.

        Args:
            backbone (OpenCLIPBackbone): a ViT CLIP.
            images (Tensor): (B, 3, H, W) normalised images.
            text (Tensor): (B, C, 2) normalised text features.
            cls_tokens (Tensor, optional): (B, C) class tokens of the unaugmented images (reused as
                view 0 instead of being recomputed).

        Returns:
            dict: ``view_probs`` (B, V, 2) per-view state probabilities, ``image_scores`` (B,).
        """
        b = images.shape[0]
        if cls_tokens is None:
            cls_tokens = self.class_tokens(backbone, images)
        feats = [cls_tokens[:, None]]
        if self.augment_views:
            views = anovl_views(images)[:, 1:].flatten(0, 1)
            extra = torch.cat([self.class_tokens(backbone, views[i:i + self.view_batch])
                               for i in range(0, len(views), self.view_batch)])
            feats.append(extra.reshape(b, -1, extra.shape[-1]))
        probs, _ = self.state_probs(torch.cat(feats, dim=1), text)
        return dict(view_probs=probs, image_scores=probs[..., 1].mean(dim=1))

    def adapt(self, backbone, tokens, text, class_names):
        """Per-image test-time adaptation of (B, h, w, C) tokens (identity without an adapter); the
        adapter optimises in float32 without autocast."""
        if self.adapter is None:
            return tokens
        with float32_region(tokens):
            tokens = upcast(tokens)
            return torch.stack([self.adapter(tokens[i], text[i],
                                             self.prompts.sentence_embeddings(backbone, name), self.temperature)
                                for i, name in enumerate(class_names)])

    @torch.no_grad()
    def forward(self, backbone, images, class_names):
        """Score a batch: (B, 3, H, W) images and B class names.

        Returns:
            dict: ``anomaly_map`` (B, H, W), ``image_scores`` (B,), and the intermediates of
            :meth:`score_tokens` and :meth:`image_scores`.
        """
        text = self.text_features(backbone, class_names)
        encoded = self.encode_tokens(backbone, images)
        tokens = self.adapt(backbone, encoded['tokens'], text, class_names)
        out = self.score_tokens(tokens, text, images.shape[-2:])
        out.update(self.image_scores(backbone, images, text, encoded['cls_ori']))
        return out
