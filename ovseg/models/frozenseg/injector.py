"""FrozenSeg's two SAM injectors in FC-CLIP's transformer decoder (feature injector, query injector)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.fcclip.classification import mask_pool
from ovseg.models.fcclip.position_encoding import sine_position_encoding
from ovseg.models.fcclip.transformer_layers import AttentionLayer
from ovseg.registry import MODELS


def _tokens(x):
    """(B, C, h, w) -> (B, hw, C)."""
    return x.flatten(2).transpose(1, 2)


def _resize_tokens(tokens, size, new_size):
    """(B, h·w, C) tokens of an (h, w) grid, bilinearly resized to ``new_size`` (no-op when equal)."""
    if tuple(size) == tuple(new_size):
        return tokens
    b, _, c = tokens.shape
    grid = tokens.transpose(1, 2).reshape(b, c, *size)
    return _tokens(F.interpolate(grid, size=tuple(new_size), mode='bilinear', align_corners=False))


@MODELS.register_module()
class FrozenSegInjector(nn.Module):
    """SAM features into FC-CLIP's decoder: the feature injector and the query injector.

    * Feature injector, at every decoder layer whose memory level is ``feature_level``: the CLIP tokens
      of that level (query, with their sine PE) attend to the SAM branch's tokens (key = tokens + their
      sine PE, value = tokens; post-norm residual), and the result is that layer's masked cross-attention
      memory. The tokens are brought to the coarsest level's size first and back after (the identity
      for ``feature_level`` 0, the released setting).
    * Query injector, after the prediction heads of every layer whose memory level is ``query_level``:
      the SAM image embedding is mask-pooled with the layer's mask logits, passed through the in-vocabulary
      classifier's pooling projection (LayerNorm + Linear, shared with FC-CLIP's mask pooling) and added
      to the queries that enter the next layer.

    ``key_pos``: the released decoder drops the key positional encoding of the masked cross-attention at
    every feature-injected layer ('none', default; the released weights were trained so); 'clip' keeps
    that level's sine PE as every other layer has it (corrected).

    Args:
        hidden_dim (int): decoder width. Default 256.
        num_heads (int): attention heads. Default 8.
        num_layers (int): decoder layers. Default 9.
        num_levels (int): memory levels used round-robin. Default 3.
        feature_level (int): level index of the feature-injected layers. Default 0.
        query_level (int): level index of the layers after which queries get the SAM embedding. Default 2.
        pre_norm (bool): pre-LayerNorm attention (the original only runs post-norm). Default False.
        key_pos (str): 'none' (released) or 'clip' (corrected).
    """

    KEY_POS = ('none', 'clip')

    def __init__(self, hidden_dim=256, num_heads=8, num_layers=9, num_levels=3, feature_level=0, query_level=2,
                 pre_norm=False, key_pos='none'):
        super().__init__()
        if key_pos not in self.KEY_POS:
            raise ValueError(f'key_pos must be one of {self.KEY_POS}, got {key_pos!r}')
        if not (0 <= feature_level < num_levels and 0 <= query_level < num_levels):
            raise ValueError(f'feature_level {feature_level} and query_level {query_level} must be level '
                             f'indices in [0, {num_levels})')
        self.num_levels, self.feature_level, self.query_level = num_levels, feature_level, query_level
        self.key_pos = key_pos
        # keyed by decoder layer index, as the original's transformer_cross_attention_layers_sam.<i>
        self.feature_injectors = nn.ModuleDict({
            str(i): AttentionLayer(hidden_dim, num_heads, pre_norm=pre_norm)
            for i in range(num_layers) if i % num_levels == feature_level})

    def bind(self, sam_feature, sam_embedding, level_embed, pool_proj, coarsest_size):
        """The per-image state the decoder's hooks read (:class:`InjectionContext`).

        Args:
            sam_feature (Tensor): (B, C, h, w) output of :class:`FrozenSegSAMBranch`.
            sam_embedding (Tensor): (B, C, H, W) SAM image embedding (mask-pooled by the query injector).
            level_embed (Tensor): (C,) the decoder's level embedding of level 0, added to the SAM tokens.
            pool_proj (nn.Module): the in-vocabulary classifier's pooling projection.
            coarsest_size (tuple[int, int]): (h, w) of the decoder's coarsest memory level; the SAM map is
                resized to it.
        """
        sam = F.interpolate(sam_feature, size=tuple(coarsest_size), mode='bilinear', align_corners=False) \
            if tuple(sam_feature.shape[-2:]) != tuple(coarsest_size) else sam_feature
        sam_pos = _tokens(sine_position_encoding(sam, sam.shape[1] // 2))
        sam_tokens = _tokens(sam) + level_embed.view(1, 1, -1)
        return InjectionContext(self, sam_tokens, sam_pos, tuple(coarsest_size), sam_embedding, pool_proj)


class InjectionContext:
    """The decoder hooks of :class:`FrozenSegInjector` for one batch (see FCCLIPTransformerDecoder)."""

    def __init__(self, injector, sam_tokens, sam_pos, coarsest_size, sam_embedding, pool_proj):
        self.injector, self.sam_tokens, self.sam_pos = injector, sam_tokens, sam_pos
        self.coarsest_size, self.sam_embedding, self.pool_proj = coarsest_size, sam_embedding, pool_proj

    def memory(self, layer, level, src, pos, size):
        """Feature injector: the memory and key positions layer ``layer``'s masked cross-attention reads."""
        attn = self.injector.feature_injectors[str(layer)] if str(layer) in self.injector.feature_injectors \
            else None
        if attn is None:
            return src, pos
        tgt = _resize_tokens(src, size, self.coarsest_size)
        query_pos = _resize_tokens(pos, size, self.coarsest_size)
        fused = attn(tgt, self.sam_tokens, pos=self.sam_pos, query_pos=query_pos)
        fused = _resize_tokens(fused, self.coarsest_size, size)
        return fused, (None if self.injector.key_pos == 'none' else pos)

    def sam_pool(self, masks):
        """(B, Q, h, w) mask logits -> (B, Q, C) projected mask-pooled SAM embedding."""
        return self.pool_proj(mask_pool(self.sam_embedding.to(masks.dtype), masks))

    def queries(self, layer, level, output, masks):
        """Query injector: ``output`` + the SAM embedding pooled in each query's mask, after the layers of
        level ``query_level`` (computed only there; the original computes and discards it elsewhere)."""
        if level != self.injector.query_level:
            return output
        return output + self.sam_pool(masks).to(output.dtype)
