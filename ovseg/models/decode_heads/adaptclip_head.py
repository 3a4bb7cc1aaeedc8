"""AdaptCLIP head: visual, textual and prompt-query adapters on a frozen DPAM CLIP; zero- and few-shot.

Reference: gaobb/AdaptCLIP (``adaptcliplib/adaptclip.py``, ``test.py``, ``train.py``), Gao et al., AAAI 2026.
Behaviours of the original kept on purpose (checked by the parity tests):

1. Vision: AnomalyCLIP's tower (DPAM in the last ``vv_blocks`` blocks, positional grid resized
   bilinearly): every token of the tapped layers' V-V path through ``ln_post`` and ``proj``; the image
   feature is the original path's class token times ``proj`` without ``ln_post``.
2. Zero-shot uses the **last** tapped layer only. Visual adapter: the adapted image feature and tokens
   against the fixed text (7 normal / 4 anomalous states x 21 templates, class word "object", mean of the
   unnormalised embeddings); textual adapter: the *unadapted* features against the learned prompts. Per
   branch: image score = softmax(cos / 0.07)[anomalous], map = softmax(cos / 0.07) per token, class token
   dropped, anomalous channel, bilinear to the input size. Map = mean(visual, textual) -> Gaussian sigma 4
   (scipy semantics); score = mean(visual, textual, map maximum).
3. Few-shot, per tapped layer: normalised query tokens (class token dropped) against the reference memory's
   normalised tokens: align = min (1 - cos) (position ignored), fusion = q + |q - p_nearest| -> BatchNorm ->
   shared local head (softmax, anomalous channel) and shared global MLP on (mean + top-10 mean) / 2.
   Map = harmonic mean(mean(visual, textual, layer-mean of the local maps), layer-harmonic-mean of the
   align maps) -> Gaussian; score = harmonic mean(mean(visual, textual, layer-mean of the global scores),
   map maximum). Every map is upsampled bilinearly (``align_corners=False``) before it is combined.
4. Final maps and scores pass through ``nan_to_num(nan=0, posinf=0, neginf=0)``.
5. Training (``loss``): for each adapter, cross-entropy of its image logits plus focal + dice(anomalous, G)
   + dice(normal, 1 - G) of its probability maps (AnomalyCLIP's losses), each query against one normal
   reference image of its category; all summed, no weights.

Inputs of any size are accepted (the original is square-only, 518 px); the grid follows the input.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.anomaly.adaptclip.adapters import PromptQueryAdapter, TextualAdapter, VisualAdapter, pq_fusion
from ovseg.models.anomaly.adaptclip.means import arithmetic_mean, harmonic_mean
from ovseg.models.anomaly.anomalyclip.losses import binary_dice_loss, probability_focal_loss
from ovseg.models.anomaly.anomalyclip.smoothing import gaussian_filter2d
from ovseg.models.anomaly.anomalyclip.text_encoder import encode_learned_prompts, text_tower
from ovseg.models.anomaly.nearest_reference import bank_bytes, nearest_reference, search_bytes
from ovseg.models.anomaly.value_value_attention import dual_path_transformer, embed_tokens, project_tokens
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.registry import MODELS


@MODELS.register_module()
class AdaptCLIPHead(nn.Module):
    """AdaptCLIP scores from an :class:`OpenCLIPBackbone` ViT; few-shot when given a reference memory.

    Call graph::

        forward(backbone, images, class_names, memory=None)     class names are unused (class-agnostic)
          ├─ encode_images               DPAM tower: projected tokens of the taps, image feature
          ├─ text_features               fixed prompt ensemble (cached) and learned prompts
          ├─ zero_shot                   visual and textual adapters on the last tap
          ├─ prompt_query(encoded, memory)   per tap: align, fusion, local / global heads
          └─ fuse                        means, Gaussian, nan_to_num
        build_memory(backbone, references)   projected tokens of every tap of k normal images
        loss(backbone, images, references, gt, labels)

    Args:
        text_width (int): CLIP text width D (the segmentor fills it in).
        embed_dim (int): joint embedding width C (the segmentor fills it in).
        n_ctx (int): learnable prompt tokens. Default 12.
        features (Sequence[int]): 1-based tapped vision blocks. Default (6, 12, 18, 24).
        vv_blocks (int): last vision blocks with the V-V path (the original's ``DPAM_layer - 1``). Default 19.
        vl_reduction (int): visual adapter bottleneck ratio. Default 4.
        pq_mid_dim (int): prompt-query adapter hidden width. Default 128.
        pq_context (bool): fusion ``q + |q - p|`` (True) or ``|q - p|``. Default True.
        pq_topk (int): top-k of the global prompt-query feature. Default 10.
        temperature (float): of every softmax. Default 0.07.
        sigma (float): Gaussian of the final map; 0 = none. Default 4.
        fusion (str): 'average_mean' (default) or 'harmonic_mean' of the branch maps and scores.
        prompts (dict): fixed text ensemble. Default WinCLIP's states and templates, unnormalised mean.
        class_word (str): class word of the fixed ensemble. Default 'object'.
        chunk_elements (int): most similarities held at once by the reference search. Default 2**24.
    """

    uses_references = True

    timed_stages = (('text_features', None), ('encode_images', None), ('score', None))  # StageTimer

    def __init__(self, text_width, embed_dim, n_ctx=12, features=(6, 12, 18, 24), vv_blocks=19, vl_reduction=4,
                 pq_mid_dim=128, pq_context=True, pq_topk=10, temperature=0.07, sigma=4.0, fusion='average_mean',
                 prompts=dict(type='AnomalyStatePrompts', prompt_set='winclip', normalize_prompts=False),
                 class_word='object', chunk_elements=1 << 24):
        super().__init__()
        if fusion not in ('average_mean', 'harmonic_mean'):
            raise ValueError(f"fusion must be 'average_mean' or 'harmonic_mean', got {fusion!r}")
        self.features, self.vv_blocks = tuple(int(f) for f in features), int(vv_blocks)
        self.textual_adapter = TextualAdapter(text_width, n_ctx)
        self.visual_adapter = VisualAdapter(embed_dim, vl_reduction)
        self.pq_adapter = PromptQueryAdapter(embed_dim, pq_mid_dim, len(self.features))
        self.static_prompts = MODELS.build(prompts)
        self.pq_context, self.pq_topk = bool(pq_context), int(pq_topk)
        self.temperature, self.sigma = float(temperature), float(sigma)
        self.fusion, self.class_word = fusion, class_word
        self.chunk_elements = int(chunk_elements)
        self._learned_cache = None  # (key, (2, C) learned text features) of the last gradient-free call

    def train(self, mode=True):
        """Also drops the cached learned text features (training changes the prompts)."""
        self._learned_cache = None
        return super().train(mode)

    def _mean(self, tensors):
        return arithmetic_mean(tensors) if self.fusion == 'average_mean' else harmonic_mean(tensors)

    # ------------------------------------------------------------------------------- encoders
    @torch.no_grad()
    def encode_images(self, backbone, images):
        """Frozen DPAM tower: ``tokens`` list of (B, 1 + h * w, C) per tap, ``image_features`` (B, C), ``grid``."""
        if backbone.kind != 'vit':
            raise NotImplementedError(f'AdaptCLIP needs a ViT CLIP, got a {backbone.kind} tower')
        visual = backbone.clip.visual
        x, grid = embed_tokens(visual, images, pos_mode='bilinear')
        out = dual_path_transformer(visual, x, min(self.vv_blocks, len(visual.transformer.resblocks)),
                                    taps=self.features)
        return dict(tokens=[project_tokens(visual, out['vv'][f]) for f in self.features],
                    raw_tokens=out['vv'], ori_tokens=out['ori'], final_ori_cls=out['last_ori'][:, 0],
                    image_features=project_tokens(visual, out['last_ori'][:, 0], with_ln_post=False), grid=grid)

    def static_text(self, backbone):
        """(2, C) unnormalised mean embeddings of the fixed [normal, anomalous] ensemble (cached)."""
        with float32_region(next(backbone.clip.parameters())):
            return self.static_prompts(backbone, self.class_word)

    def learned_text(self, backbone):
        """(2, C) unnormalised text features of the learned prompts.

        With gradients enabled they are recomputed (differentiable w.r.t. the contexts); without, the last
        result is reused while the contexts and the text tower are unchanged (same tensors, same in-place
        versions: an optimiser step or ``load_state_dict`` recomputes them).
        """
        tower = text_tower(backbone.clip)
        key = None
        if not torch.is_grad_enabled():
            parts = [getattr(tower, n, None) for n in ('token_embedding', 'positional_embedding', 'transformer',
                                                        'ln_final', 'text_projection')]
            tensors = [*self.textual_adapter.parameters()]
            tensors += [t for p in parts for t in (p.parameters() if isinstance(p, nn.Module) else [p])
                        if isinstance(t, torch.Tensor)]
            key = (id(backbone.clip), tuple((t.device, t.dtype, t.data_ptr(), t._version) for t in tensors))
            if self._learned_cache is not None and self._learned_cache[0] == key:
                return self._learned_cache[1]
        tokens = self.textual_adapter.tokenized_prompts(backbone.tokenizer, tower.token_embedding.weight.device)
        with float32_region(self.textual_adapter.ctx_pos):
            prompts = self.textual_adapter(tower.token_embedding, tokens)
            feats = encode_learned_prompts(backbone.clip, prompts, tokens).float()
        if key is not None:
            self._learned_cache = (key, feats)
        return feats

    def text_features(self, backbone):
        """(static, learned) (2, C) text features: the fixed ensemble (cached) and the learned prompts."""
        return self.static_text(backbone), self.learned_text(backbone)

    @torch.no_grad()
    def build_memory(self, backbone, reference_images):
        """k normal images -> the prompt-query memory (the original's ``build_prompt_memory``).

        Returns:
            dict: ``banks`` per tap (k * h * w, C) float32 L2-normalised patch tokens (class token dropped,
            reference-major: the form the prompt-query search uses), ``grid``, ``num_references`` and the
            references' ``image_features`` (k, C) (kept by the original, unused by the scores).
        """
        if reference_images.dim() != 4 or len(reference_images) == 0:
            raise ValueError(f'reference images must be a non-empty (k, 3, H, W) batch, got '
                             f'{tuple(reference_images.shape)}')
        enc = upcast(self.encode_images(backbone, reference_images))
        return dict(banks=[self.bank(t.float()) for t in enc['tokens']], grid=enc['grid'],
                    num_references=len(reference_images), image_features=enc['image_features'].float())

    @staticmethod
    def bank(tokens):
        """(k, 1 + L, C) projected tokens of one tap -> (k * L, C) normalised patch tokens."""
        return F.normalize(tokens, dim=-1)[:, 1:].reshape(-1, tokens.shape[-1])

    # ------------------------------------------------------------------------------- scores
    def _branch(self, image_features, tokens, text, grid, size):
        """One adapter branch: (B, 2) image logits, (B, N, 2) token probabilities, (B, 2, H, W) maps."""
        text = F.normalize(text, dim=-1)
        logits = F.normalize(image_features, dim=-1) @ text.t() / self.temperature
        probs = (F.normalize(tokens, dim=-1) @ text.t() / self.temperature).softmax(dim=-1)
        grid_map = probs[:, 1:].reshape(probs.shape[0], grid[0], grid[1], 2).permute(0, 3, 1, 2)
        return logits, probs, F.interpolate(grid_map, size=tuple(size), mode='bilinear', align_corners=False)

    def zero_shot(self, encoded, static_text, learned_text, size):
        """Visual and textual adapter outputs of the last tap: ``vl_*`` / ``tl_*`` logits, image scores,
        token probabilities, (B, 2, H, W) maps and the adapted ``vl_image_feature`` / ``vl_tokens``."""
        image, tokens, grid = encoded['image_features'], encoded['tokens'][-1], encoded['grid']
        vl_image, vl_tokens = self.visual_adapter(image, tokens)
        out = dict(vl_image_feature=vl_image, vl_tokens=vl_tokens)
        for name, args in (('vl', (vl_image, vl_tokens, static_text)), ('tl', (image, tokens, learned_text))):
            logits, probs, maps = self._branch(*args, grid, size)
            out.update({f'{name}_logits': logits, f'{name}_image_score': logits.softmax(dim=-1)[:, 1],
                        f'{name}_similarity': probs, f'{name}_maps': maps})
        return out

    def _nearest(self, query, banks):
        """Per-query-image bank search: ``banks`` (M, C) shared or a list of B banks (normalised)."""
        if torch.is_tensor(banks):
            return nearest_reference(query, banks, self.chunk_elements, normalized=True)
        pairs = [nearest_reference(query[i:i + 1], bank, self.chunk_elements, normalized=True)
                 for i, bank in enumerate(banks)]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    def prompt_query(self, encoded, banks, size):
        """Prompt-query adapter on every tap.

        Args:
            encoded (dict): :meth:`encode_images` output of the queries.
            banks (list): per tap a (M, C) normalised bank shared by the batch (:meth:`bank`), or a list of B
                banks (training: one reference set per query).
            size (tuple[int, int]): output map size.

        Returns:
            dict: per-tap lists ``pq_align`` (B, L), ``pq_nn_index`` (B, L), ``pq_fusion`` and
            ``pq_fusion_bn`` (B, C, h, w) before / after the layer's BatchNorm, ``pq_local_logits``
            (B, 2, 4h, 4w), ``pq_global_logits`` (B, 2), ``pq_local_maps`` and ``pq_align_maps``
            (B, 2 | 1, H, W) upsampled.
        """
        keys = ('pq_align', 'pq_nn_index', 'pq_fusion', 'pq_fusion_bn', 'pq_local_logits', 'pq_global_logits',
                'pq_local_maps', 'pq_align_maps')
        out = {k: [] for k in keys}
        for layer, tokens in enumerate(encoded['tokens']):  # one tap at a time: its bank copies die per tap
            for key, value in zip(keys, self._prompt_query_tap(layer, tokens, banks[layer], encoded['grid'],
                                                               size)):
                out[key].append(value)
        return out

    def _prompt_query_tap(self, layer, tokens, banks, grid, size):
        query = F.normalize(tokens, dim=-1)[:, 1:]
        align, index = self._nearest(query, banks)
        aligned = banks[index] if torch.is_tensor(banks) else torch.stack([b[i] for b, i in zip(banks, index)])
        fusion = pq_fusion(query, aligned, self.pq_context).transpose(1, 2).reshape(
            query.shape[0], -1, grid[0], grid[1])
        local, image_logits, fusion_bn = self.pq_adapter(fusion, layer, self.pq_topk)
        local_map = F.interpolate(local.softmax(dim=1), size=tuple(size), mode='bilinear', align_corners=False)
        align_map = F.interpolate(align.reshape(-1, 1, grid[0], grid[1]), size=tuple(size), mode='bilinear',
                                  align_corners=False)
        return align, index, fusion, fusion_bn, local, image_logits, local_map, align_map

    def score(self, encoded, static_text, learned_text, size, memory=None):
        """Zero-shot (``memory`` None) or few-shot maps and scores (float32, no autocast).

        Returns:
            dict: :meth:`zero_shot` (and :meth:`prompt_query`) entries, ``anomaly_map_raw`` (B, H, W) before
            smoothing, ``anomaly_map`` (B, H, W), ``image_scores`` (B,) and the few-shot intermediates
            ``pq_image_score``, ``pq_map``, ``align_map``, ``map_avg``, ``image_avg``.
        """
        with float32_region(static_text):
            encoded = upcast(encoded)
            out = self.zero_shot(encoded, static_text, learned_text, size)
            maps = [out['vl_maps'][:, 1], out['tl_maps'][:, 1]]
            scores = [out['vl_image_score'], out['tl_image_score']]
            if memory is None:
                raw = self._mean(maps)
                smooth = gaussian_filter2d(raw, self.sigma)
                image = self._mean(scores + [smooth.flatten(1).amax(dim=1)])
            else:
                if tuple(memory['grid']) != tuple(encoded['grid']):
                    raise ValueError(f'the reference memory was built on a {memory["grid"]} patch grid but the '
                                     f'queries have {encoded["grid"]}: use one input size for both')
                out.update(self.prompt_query(encoded, memory['banks'], size))
                out['pq_map'] = torch.stack([m[:, 1] for m in out['pq_local_maps']], dim=1).mean(dim=1)
                out['align_map'] = harmonic_mean(out['pq_align_maps'])[:, 0]
                out['pq_image_score'] = torch.stack([g.softmax(dim=-1) for g in out['pq_global_logits']],
                                                    dim=-1).mean(dim=-1)[:, 1]
                out['map_avg'] = self._mean(maps + [out['pq_map']])
                raw = harmonic_mean([out['map_avg'], out['align_map']])
                smooth = gaussian_filter2d(raw, self.sigma)
                out['image_avg'] = self._mean(scores + [out['pq_image_score']])
                image = harmonic_mean([out['image_avg'], smooth.flatten(1).amax(dim=1)])
            out.update(anomaly_map_raw=raw, anomaly_map=torch.nan_to_num(smooth, nan=0.0, posinf=0.0, neginf=0.0),
                       image_scores=torch.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0))
        return out

    @torch.no_grad()
    def forward(self, backbone, images, class_names=None, memory=None):
        """Score a batch (class names unused): ``anomaly_map`` (B, H, W), ``image_scores`` (B,), intermediates."""
        return self.score(self.encode_images(backbone, images), *self.text_features(backbone), images.shape[-2:],
                          memory)

    # ------------------------------------------------------------------------------- training
    def loss(self, backbone, images, references, gt, labels):
        """Loss terms of one batch (each query with its own reference images).

        Args:
            backbone (OpenCLIPBackbone): frozen ViT CLIP.
            images (Tensor): (B, 3, H, W) normalised queries.
            references (Tensor): (B, s, 3, H, W) normal images of each query's category.
            gt (Tensor): (B, H, W) {0, 1} masks at the input size.
            labels (Tensor): (B,) image labels (1 = anomalous).

        Returns:
            dict: ``loss_image`` (cross-entropy of the 2 + taps image logits, summed), ``loss_focal`` and
            ``loss_dice`` (summed over the branches' maps).
        """
        b, s = references.shape[:2]
        encoded = self.encode_images(backbone, images)
        refs = self.encode_images(backbone, references.flatten(0, 1))['tokens']
        banks = [[self.bank(t.reshape(b, s, *t.shape[1:])[i]) for i in range(b)] for t in refs]
        size = gt.shape[-2:]
        out = self.zero_shot(encoded, *self.text_features(backbone), size)
        out.update(self.prompt_query(encoded, banks, size))
        logits = [out['vl_logits'], out['tl_logits']] + out['pq_global_logits']
        maps = [out['vl_maps'], out['tl_maps']] + out['pq_local_maps']
        return dict(loss_image=sum(F.cross_entropy(x, labels.long()) for x in logits),
                    loss_focal=sum(probability_focal_loss(m, gt) for m in maps),
                    loss_dice=sum(binary_dice_loss(m[:, 1], gt) + binary_dice_loss(m[:, 0], 1 - gt) for m in maps))

    def memory_bytes(self, num_references, grid, embed_dim, map_size, num_queries=1):
        """(bank bytes, scoring bytes): the memory of ``num_references`` images (every tap's normalised patch
        tokens, exact, float32) and an upper estimate of the extra memory of scoring ``num_queries`` images.

        Scoring terms: the chunked search (:func:`search_bytes`); per query and tap about 12 maps of
        (C, h, w) (normalised and aligned tokens, fusion, BatchNorm) and the local head's activations (about
        4000 x h x w values); per query about 48 maps of ``map_size`` (branch, tap and fused maps, the float64
        smoothing passes); 4 MiB for the matrix-product library's packing buffers.
        """
        patches = grid[0] * grid[1]
        bank = bank_bytes(num_references, [(patches, embed_dim)] * len(self.features))
        per_query = 4 * (12 * embed_dim * patches + 4000 * patches + 48 * map_size[0] * map_size[1])
        return bank, (num_queries * per_query + (4 << 20)
                      + search_bytes(num_queries * patches, embed_dim, num_references * patches,
                                     self.chunk_elements, normalized=True))
