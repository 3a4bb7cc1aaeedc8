"""AnomalyCLIP head: learned object-agnostic prompts, DPAM tokens, multi-layer maps, losses.

Reference: zqhang/AnomalyCLIP (``AnomalyCLIP_lib``, ``prompt_ensemble.py``, ``train.py``, ``test.py``),
Zhou et al., ICLR 2024. Behaviours of the original kept on purpose (each checked by the parity tests):

1. The class word is always "object" (object-agnostic); class names are ignored.
2. Deep text prompts replace tokens 1..n before text blocks 1..depth-1 and are rounded to float16
   (:mod:`ovseg.models.anomaly.anomalyclip.text_encoder`).
3. DPAM: the last ``vv_blocks`` vision blocks are dual-path (:mod:`ovseg.models.backbones.value_value`) starting
   from the output of the last plain block; tapped layers give their V-V tokens (plain output for a
   tapped plain block), then ``ln_post`` and ``proj`` for **all** tokens, class token included.
4. The image feature is the original path's class token of the last block times ``proj``, **without
   ln_post**.
5. The positional grid is resized bilinearly (``align_corners=False``) from the stored square grid (the
   reference overwrites its parameter on the first call; recomputing gives the same values for any
   fixed input size).
6. Per layer, softmax(cos / 0.07) over [normal, anomalous] for every token, the class token dropped,
   bilinear upsampling (``align_corners=False``); map = (p_anomalous + 1 - p_normal) / 2, summed over
   layers (not averaged: values lie in [0, number of layers]), then a scipy-equivalent Gaussian
   (sigma 4, reflect). Image score = softmax(cos(image, text) / 0.07)[anomalous].
7. Losses: CE on image logits + lam x sum over layers of focal + dice(anomalous, G) +
   dice(normal, 1 - G) on the upsampled probability maps, lam = 4 (:mod:`ovseg.models.anomaly.anomalyclip.losses`).

Inference only: without gradients the text features are computed once and reused until a prompt or
text-tower parameter changes (keyed on their storage and in-place version counters, so an optimiser
step or ``load_state_dict`` recomputes them; ``train()`` clears them too). Text features, similarities,
softmax and smoothing are float32 without autocast; only the vision tower follows the segmentor's
precision.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.backbones.value_value import dual_path_transformer, embed_tokens, project_tokens
from ovseg.models.backbones.vit_towers import tower_depth
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS
from ovseg.models.anomaly.anomalyclip.losses import anomalyclip_losses
from ovseg.models.anomaly.anomalyclip.prompt_learner import OBJECT_STATES, AnomalyCLIPPromptLearner
from ovseg.models.anomaly.anomalyclip.smoothing import gaussian_filter2d
from ovseg.models.anomaly.anomalyclip.text_encoder import encode_learned_prompts, text_tower


@MODELS.register_module()
class AnomalyCLIPHead(nn.Module):
    """AnomalyCLIP scores and losses from an :class:`OpenCLIPBackbone` ViT.

    Call graph::

        forward(backbone, images, class_names)       class names are ignored (object-agnostic)
          ├─ text_features(backbone)                 prompt learner -> deep-prompt text tower (2, C)
          ├─ encode_images(backbone, images)          DPAM ViT: tokens of ``features``, image feature
          ├─ layer_similarity / similarity_maps       per layer softmax(cos / T), upsampled (B, 2, H, W)
          └─ anomaly map (sum over layers, Gaussian) and image score
        loss(backbone, images, gt, labels)            CE + lam x (focal + dice + dice) per layer

    Args:
        text_width (int): CLIP text width D (768 for ViT-L/14; the segmentor fills it in).
        n_ctx (int): learnable prompt tokens. Default 12.
        text_depth (int): deep prompts up to this text block (``depth``). Default 9.
        text_n_ctx (int): tokens per deep set. Default 4.
        features (Sequence[int]): 1-based vision blocks whose tokens make maps. Default (6, 12, 18, 24).
        vv_blocks (int): last vision blocks with the V-V path (reference ``DPAM_layer - 1``). Default 19.
        temperature (float): of every softmax. Default 0.07.
        sigma (float): Gaussian of the final map; 0 = none. Default 4.
        lam (float): weight of the segmentation losses. Default 4.
        fp16_deep_prompts (bool): float16 rounding of the deep prompts (reference). Default True.
        class_word (str): class-agnostic word. Default 'object'.
        states (Sequence[str]): (normal, anomalous) templates. Default ('{}', 'damaged {}').
    """

    timed_stages = (('text_features', None), ('encode_images', None), ('score', None))  # StageTimer

    def __init__(self, text_width, n_ctx=12, text_depth=9, text_n_ctx=4, features=(6, 12, 18, 24), vv_blocks=19,
                 temperature=0.07, sigma=4.0, lam=4.0, fp16_deep_prompts=True, class_word='object',
                 states=OBJECT_STATES):
        super().__init__()
        self.prompt_learner = AnomalyCLIPPromptLearner(text_width, n_ctx, text_depth, text_n_ctx, class_word,
                                                       states)
        self.features = tuple(int(f) for f in features)
        self.vv_blocks = int(vv_blocks)
        self.temperature = float(temperature)
        self.sigma = float(sigma)
        self.lam = float(lam)
        self.fp16_deep_prompts = bool(fp16_deep_prompts)
        self._text_cache = None  # (key, (2, C) text features) of the last gradient-free call

    def train(self, mode=True):
        """Also drops the cached text features (training changes the prompts)."""
        self._text_cache = None
        return super().train(mode)

    def _visual(self, backbone):
        if backbone.kind != 'vit':
            raise NotImplementedError(f'AnomalyCLIP needs a ViT CLIP, got a {backbone.kind} tower')
        return backbone.clip.visual

    def prompts(self, backbone):
        """(2, L, D) prompt embeddings and (2, L) token ids."""
        t = text_tower(backbone.clip)
        tokens = self.prompt_learner.tokenized_prompts(backbone.tokenizer, t.token_embedding.weight.device)
        return self.prompt_learner(t.token_embedding, tokens), tokens

    def text_features(self, backbone, record=None):
        """(2, C) L2-normalised [normal, anomalous] float32 text features, without autocast.

        With gradients enabled they are recomputed (differentiable w.r.t. the prompts); without, the
        last result is reused while the prompts and the text tower are unchanged (``record`` given:
        always recomputed).
        """
        cacheable = record is None and not torch.is_grad_enabled()
        key = self._text_cache_key(backbone) if cacheable else None
        if cacheable and self._text_cache is not None and self._text_cache[0] == key:
            return self._text_cache[1]
        with float32_region(self.prompt_learner.ctx_pos):
            prompts, tokens = self.prompts(backbone)
            feats = encode_learned_prompts(backbone.clip, prompts, tokens,
                                           list(self.prompt_learner.compound_prompts_text),
                                           self.fp16_deep_prompts, record)
            feats = F.normalize(feats.float(), dim=-1)
        if cacheable:
            self._text_cache = (key, feats)
        return feats

    def _text_cache_key(self, backbone):
        """What the text features depend on: the CLIP instance, the flags and the identity and in-place
        version of every prompt-learner and text-tower tensor."""
        tower = text_tower(backbone.clip)
        tensors = [*self.prompt_learner.parameters(), *self.prompt_learner.buffers()]
        for name in ('token_embedding', 'positional_embedding', 'transformer', 'ln_final', 'text_projection'):
            part = getattr(tower, name, None)  # the text parts only (plain CLIP also holds the vision tower)
            tensors += list(part.parameters()) if isinstance(part, torch.nn.Module) else [part]
        tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
        return (id(backbone.clip), self.fp16_deep_prompts,
                tuple((t.device, t.dtype, t.data_ptr(), t._version) for t in tensors))

    @torch.no_grad()
    def encode_images(self, backbone, images):
        """Frozen DPAM vision tower.

        Returns:
            dict: ``patch_tokens`` list of (B, 1 + h * w, C) projected tokens per ``features`` layer,
            ``raw_tokens`` {block: (B, 1 + h * w, D)} before ``ln_post``, ``image_features`` (B, C)
            unnormalised, ``grid`` (h, w).
        """
        visual = self._visual(backbone)
        depth = tower_depth(visual)
        x, grid = embed_tokens(visual, images, pos_mode='bilinear')
        out = dual_path_transformer(visual, x, min(self.vv_blocks, depth), taps=self.features)
        patch_tokens = [project_tokens(visual, out['vv'][f]) for f in self.features]
        image_features = project_tokens(visual, out['last_ori'][:, 0], with_ln_post=False)
        return dict(patch_tokens=patch_tokens, raw_tokens=out['vv'], image_features=image_features, grid=grid)

    def image_logits(self, image_features, text):
        """(B, C) image features, (2, C) text -> (B, 2) cos / temperature (float32, no autocast)."""
        with float32_region(image_features):
            return F.normalize(upcast(image_features), dim=-1) @ text.t() / self.temperature

    def layer_similarity(self, patch_tokens, text):
        """Per layer (B, N, 2) softmax(cos / temperature) of every token (class token included); float32
        without autocast."""
        with float32_region(text):
            return [(F.normalize(upcast(tokens), dim=-1) @ text.t() / self.temperature).softmax(dim=-1)
                    for tokens in patch_tokens]

    @staticmethod
    def similarity_maps(similarity, grid, size):
        """Per layer (B, N, 2) -> (B, 2, H, W): drop the class token, bilinear to ``size``."""
        maps = []
        for sim in similarity:
            grid_map = sim[:, 1:].reshape(sim.shape[0], grid[0], grid[1], 2).permute(0, 3, 1, 2)
            maps.append(F.interpolate(grid_map, size=tuple(size), mode='bilinear', align_corners=False))
        return maps

    def score(self, encoded, text, size):
        """Maps and scores of encoded images.

        Returns:
            dict: ``text_probs`` (B, 2), ``image_scores`` (B,), ``layer_similarity`` list of (B, N, 2),
            ``layer_anomaly_maps`` (L, B, H, W), ``anomaly_map_raw`` (B, H, W) (sum over layers) and
            ``anomaly_map`` (B, H, W) (smoothed); float32, without autocast.
        """
        with float32_region(text):
            return self._score(upcast(encoded), text, size)

    def _score(self, encoded, text, size):
        text_probs = self.image_logits(encoded['image_features'], text).softmax(dim=-1)
        similarity = self.layer_similarity(encoded['patch_tokens'], text)
        maps = self.similarity_maps(similarity, encoded['grid'], size)
        layer_maps = torch.stack([(m[:, 1] + 1 - m[:, 0]) / 2.0 for m in maps])
        raw = layer_maps.sum(dim=0)
        return dict(text_probs=text_probs, image_scores=text_probs[:, 1], layer_similarity=similarity,
                    layer_anomaly_maps=layer_maps, anomaly_map_raw=raw,
                    anomaly_map=gaussian_filter2d(raw, self.sigma))

    @torch.no_grad()
    def forward(self, backbone, images, class_names=None):
        """Score a batch: ``anomaly_map`` (B, H, W), ``image_scores`` (B,) and the intermediates."""
        return self.score(self.encode_images(backbone, images), self.text_features(backbone), images.shape[-2:])

    def loss(self, backbone, images, gt, labels, encoded=None):
        """Training losses of one batch.

        Args:
            backbone (OpenCLIPBackbone): frozen ViT CLIP.
            images (Tensor): (B, 3, H, W) normalised images.
            gt (Tensor): (B, H', W') {0, 1} masks; maps are upsampled to (H', W').
            labels (Tensor): (B,) image labels.
            encoded (dict, optional): :meth:`encode_images` output to reuse.

        Returns:
            dict: see :func:`anomalyclip_losses`, plus ``image_logits`` (B, 2).
        """
        encoded = self.encode_images(backbone, images) if encoded is None else encoded
        text = self.text_features(backbone)
        logits = self.image_logits(encoded['image_features'], text)
        maps = self.similarity_maps(self.layer_similarity(encoded['patch_tokens'], text), encoded['grid'],
                                    gt.shape[-2:])
        out = anomalyclip_losses(logits, labels, maps, gt, self.lam)
        out['image_logits'] = logits.detach()
        return out
