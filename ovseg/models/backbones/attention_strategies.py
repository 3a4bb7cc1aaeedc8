"""Per-block attention strategies: how one ViT block computes its output during a walk.

**Contract.** A strategy is a small registered object (``MODELS``) called by the walker
(:func:`.vit_walker.walk`) in place of the block::

    x_out = strategy(view, x, ctx)

- ``view`` (:class:`.block_views.BlockView`): the block's parts, whatever library built it:
  ``norm1(x)``, ``qkv(y, ctx) -> q, k, v`` each (B, heads, N, d), ``linear_part(y, 'q'|'k'|'v')``
  (B, N, D), ``project(o)`` (the output projection of (B, heads, N, d) or (B, N, D) values),
  ``ls1`` / ``ls2`` (LayerScale or identity), ``ffn(x)`` (``x + ls2(mlp(norm2 x))``), ``forward(x)``
  (the block as trained), ``split_heads`` / ``merge_heads``.
- ``x`` (B, N, D): the tokens entering the block, batch first; the first ``ctx.num_prefix`` are prefix
  tokens (class, registers), the rest the ``ctx.grid`` patches row-major.
- ``ctx`` (:class:`.vit_walker.WalkContext`): ``grid``, ``num_prefix``, ``index`` (0-based block),
  ``depth``; ``external`` (inputs from the caller: another network's affinity, mask proposals, attention
  masks; read with ``ctx.require(key, who)``); ``streams`` (extra token streams carried from block to
  block); ``keep(name, value)`` / ``wants(name)`` (records for the caller: 'attn.i' the weights of block i,
  'attn_logits.i' their logits, 'attn_parts.i' SCLIP's two softmax maps, 'omega.i' NACLIP's prior) and
  ``keep_site(index, site, value)`` (taps such as 'ln_2').
- Returns (B, N', D). A strategy that changes the token set (drops the class token, moves to another
  grid) sets ``ctx.grid`` and ``ctx.num_prefix``; the following blocks and the tower head see the new set.

Every strategy of the self-attention family has ``residual`` (add the block input back to the
attention output) and ``ffn`` (then run the block's feed-forward with its residual); ``scale`` is the
logit multiplier (None: ``head_dim ** -0.5``). Defaults are each original's:

=============================  ==========================================  ========  ===  =============
strategy                       attention weights                           residual  ffn  original
=============================  ==========================================  ========  ===  =============
``QKAttention``                softmax(q kᵀ s) (+ external additive mask)  yes       yes  CLIP
``MaskCLIPValueAttention``     none: every token takes its own value       yes       yes  MaskCLIP
``ValueValueAttention``        softmax(q kᵀ s) path + softmax(v vᵀ s) path  (dual)   (dual)  AnoVL, AnomalyCLIP
``CorrelativeAttention``       softmax(q qᵀ s) + softmax(k kᵀ s) (sum)     yes       yes  SCLIP
``QueryQueryAttention``        softmax(q qᵀ s)                             no        no   ClearCLIP
``NeighbourhoodAttention``     softmax(k kᵀ s + Gaussian(grid distance))   no        no   NACLIP
``ExternalAffinityAttention``  given by the caller (``ctx.external``)      no        no   ProxyCLIP-like
=============================  ==========================================  ========  ===  =============

**External affinities.** :class:`ExternalAffinityAttention` applies attention weights computed outside
the tower (from DINO / SAM features or mask proposals, :mod:`.affinity`) to the block's values, and may
move the output to the affinity's grid; :class:`QKAttention` takes an additive mask
(``mask_key``) for sequences whose attention is restricted (e.g. by proposals).
"""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.affinity import Affinity, gaussian_neighbourhood
from ovseg.registry import MODELS


def plain_softmax(logits):
    """``exp(x) / sum(exp(x))`` over the last dim, without the max subtraction (AnoVL's own softmax).

    Where that overflows (a logit above ~88 in float32) the reference returns NaN; the stable softmax,
    equal up to rounding, is used instead for the whole tensor.
    """
    e = logits.exp()
    if not torch.isfinite(e).all():
        return logits.softmax(dim=-1)
    return e / e.sum(dim=-1, keepdim=True)


class _Strategy:
    """Shared options and the residual / feed-forward tail."""

    is_standard = False

    def __init__(self, residual=True, ffn=True, scale=None):
        self.residual, self.ffn, self.scale = bool(residual), bool(ffn), scale

    def _scale(self, q):
        return q.shape[-1] ** -0.5 if self.scale is None else float(self.scale)

    def _tail(self, view, x, out, ctx):
        out = view.ls1(out)
        x = x + out if self.residual else out
        ctx.keep_site(ctx.index, 'attn_residual', x)
        return view.ffn(x, ctx, ctx.index) if self.ffn else x

    @staticmethod
    def _keep_qkv(view, ctx, q, k, v):
        if ctx.wants_site(ctx.index):
            for site, value in zip('qkv', (q, k, v)):
                ctx.keep_site(ctx.index, site, view.merge_heads(value))

    def __repr__(self):
        return f'{type(self).__name__}(residual={self.residual}, ffn={self.ffn}, scale={self.scale})'


@MODELS.register_module()
class QKAttention(_Strategy):
    """CLIP's own attention, softmax(q kᵀ s) v, through the fused kernel.

    Args:
        residual (bool): add the block input. Default True.
        ffn (bool): run the feed-forward. Default True.
        mask_key (str, optional): name of an additive attention mask in ``ctx.external``, broadcastable to
            (B, heads, N, N) (``-inf`` where attention is not allowed). Default None.
    """

    def __init__(self, residual=True, ffn=True, mask_key=None):
        super().__init__(residual, ffn)
        self.mask_key = mask_key
        self.is_standard = residual and ffn and mask_key is None

    def __call__(self, view, x, ctx):
        mask = None if self.mask_key is None else ctx.require(self.mask_key, type(self).__name__)
        if self.residual and self.ffn:
            return view.forward(x, ctx, attn_mask=mask, index=ctx.index)
        y = view.norm1(x)
        ctx.keep_site(ctx.index, 'ln_1', y)
        return self._tail(view, x, view.attention(y, ctx, mask), ctx)


@MODELS.register_module()
class MaskCLIPValueAttention(_Strategy):
    """MaskCLIP: no query-key attention; every token takes ``out_proj(v(ln_1 x))``, then residual and FFN."""

    def __call__(self, view, x, ctx):
        y = view.norm1(x)
        ctx.keep_site(ctx.index, 'ln_1', y)
        return self._tail(view, x, view.project(view.linear_part(y, 'v')), ctx)


class _SelfSimilarity(_Strategy):
    """softmax-normalised self-similarities of q / k applied to v.

    Subclasses give the attention weights explicitly (``weights``, used when the caller records
    attention maps) and as fused ``scaled_dot_product_attention`` calls (``fused``, the default: the
    weights are linear in the softmax maps, so ``sum_i softmax(a_i) v = sum_i sdpa(a_i, v)``, without
    materialising the (N, N) maps).
    """

    records = ('attn', 'attn_logits', 'attn_parts', 'omega')

    def weights(self, q, k, v, ctx):
        raise NotImplementedError

    def fused(self, q, k, v, ctx):
        raise NotImplementedError

    def __call__(self, view, x, ctx):
        y = view.norm1(x)
        ctx.keep_site(ctx.index, 'ln_1', y)
        q, k, v = view.qkv(y, ctx)
        self._keep_qkv(view, ctx, q, k, v)
        if any(ctx.wants(f'{name}.{ctx.index}') for name in self.records):
            weights = self.weights(q, k, v, ctx)
            if ctx.wants(f'attn.{ctx.index}'):
                ctx.keep(f'attn.{ctx.index}', weights)
            out = weights @ v
        else:
            out = self.fused(q, k, v, ctx)
        return self._tail(view, x, view.project(out), ctx)

    def _sdpa(self, a, b, v, mask=None):
        """softmax(a bᵀ s + mask) v through the fused kernel."""
        return F.scaled_dot_product_attention(a, b, v, attn_mask=mask, scale=self._scale(a))


@MODELS.register_module()
class CorrelativeAttention(_SelfSimilarity):
    """SCLIP's correlative self-attention: softmax(q qᵀ s) + softmax(k kᵀ s) (rows sum to 2, not halved).

    Args:
        residual (bool): Default True (SCLIP keeps the residual). ffn (bool): Default True. scale (float,
        optional): logit multiplier, default ``head_dim ** -0.5``.
    """

    def weights(self, q, k, v, ctx):
        s = self._scale(q)
        qq = ((q @ q.transpose(-2, -1)) * s).softmax(dim=-1)
        kk = ((k @ k.transpose(-2, -1)) * s).softmax(dim=-1)
        if ctx.wants(f'attn_parts.{ctx.index}'):
            ctx.keep(f'attn_parts.{ctx.index}', (qq, kk))
        return qq + kk

    def fused(self, q, k, v, ctx):
        return self._sdpa(q, q, v) + self._sdpa(k, k, v)


@MODELS.register_module()
class QueryQueryAttention(_SelfSimilarity):
    """ClearCLIP's query-query attention softmax(q qᵀ s), by default without residual and feed-forward."""

    def __init__(self, residual=False, ffn=False, scale=None):
        super().__init__(residual, ffn, scale)

    def weights(self, q, k, v, ctx):
        logits = (q @ q.transpose(-2, -1)) * self._scale(q)
        if ctx.wants(f'attn_logits.{ctx.index}'):
            ctx.keep(f'attn_logits.{ctx.index}', logits)
        return logits.softmax(dim=-1)

    def fused(self, q, k, v, ctx):
        return self._sdpa(q, q, v)


@MODELS.register_module()
class NeighbourhoodAttention(_SelfSimilarity):
    """NACLIP's neighbourhood attention: softmax(k kᵀ s + ω), ω a Gaussian of the grid distance.

    ω(p, p') = exp(-|p - p'|² / (2 std²)) for patches p, p' of the ``ctx.grid`` (the same for every head,
    added after the scaling, zero in the prefix rows and columns); built in one vectorised step.

    Args:
        gaussian_std (float, optional): std of the Gaussian in patches. Default 5.0 (NACLIP); None drops
            ω (NACLIP's 'kk' ablation).
        residual (bool): Default False. ffn (bool): Default False ('reduced' architecture).
        scale (float, optional): logit multiplier, default ``head_dim ** -0.5``.
    """

    def __init__(self, gaussian_std=5.0, residual=False, ffn=False, scale=None):
        super().__init__(residual, ffn, scale)
        self.gaussian_std = None if gaussian_std is None else float(gaussian_std)

    def _omega(self, ctx, like):
        if self.gaussian_std is None:
            return None
        omega = gaussian_neighbourhood(ctx.grid, self.gaussian_std, ctx.num_prefix, like.dtype, like.device)
        if ctx.wants(f'omega.{ctx.index}'):
            ctx.keep(f'omega.{ctx.index}', omega)
        return omega

    def weights(self, q, k, v, ctx):
        logits = (k @ k.transpose(-2, -1)) * self._scale(k)
        omega = self._omega(ctx, logits)
        if omega is not None:
            logits = logits + omega
        if ctx.wants(f'attn_logits.{ctx.index}'):
            ctx.keep(f'attn_logits.{ctx.index}', logits)
        return logits.softmax(dim=-1)

    def fused(self, q, k, v, ctx):
        return self._sdpa(k, k, v, self._omega(ctx, k))


@MODELS.register_module()
class ValueValueAttention(_Strategy):
    """The dual path of AnoVL / AnomalyCLIP (CLIP Surgery lineage).

    The main stream is the ordinary block (``softmax(q kᵀ s) v``, residual, feed-forward); q, k, v come
    from ``ln_1`` of the main stream. The value-value stream (``ctx.streams[stream]``, started from the
    main tokens at the first dual block) adds ``out_proj(softmax(v vᵀ s) v)`` and skips the feed-forward.

    Args:
        plain_softmax (bool): main-path weights with :func:`plain_softmax` (AnoVL). Default False.
        with_vv (bool): compute the value-value stream. Default True.
        stream (str): name of the stream. Default 'vv'.
    """

    def __init__(self, plain_softmax=False, with_vv=True, stream='vv'):
        super().__init__(True, True)
        self.plain_softmax, self.with_vv, self.stream = bool(plain_softmax), bool(with_vv), stream

    def __call__(self, view, x, ctx):
        if self.with_vv and self.stream not in ctx.streams:
            ctx.streams[self.stream] = x
        q, k, v = view.qkv(view.norm1(x), ctx)
        scale = q.shape[-1] ** -0.5
        logits = (q @ k.transpose(-2, -1)) * scale
        weights = plain_softmax(logits) if self.plain_softmax else logits.softmax(dim=-1)
        x = x + view.ls1(view.project(weights @ v))
        ctx.keep_site(ctx.index, 'attn_residual', x)
        x = view.ffn(x, ctx, ctx.index)
        if self.with_vv:
            vv_weights = ((v @ v.transpose(-2, -1)) * scale).softmax(dim=-1)
            ctx.streams[self.stream] = ctx.streams[self.stream] + view.ls1(view.project(vv_weights @ v))
        return x


@MODELS.register_module()
class ExternalAffinityAttention(_Strategy):
    """Attention weights from outside the tower applied to the block's values.

    Reads an :class:`.affinity.Affinity` (or a bare (B, [heads,] M, L) weight tensor) from
    ``ctx.external[key]``. The patch values of the block (prefix tokens dropped) are resized bilinearly
    to the affinity's ``value_grid`` when it differs from the tower grid; the output is
    ``out_proj(weights @ v)``: M patch tokens on the affinity's ``grid``, without prefix tokens.

    Args:
        key (str): name of the affinity in ``ctx.external``. Default 'affinity'.
        residual (bool): add the block's patch tokens (needs the same grid). Default False.
        ffn (bool): run the feed-forward after. Default False.
    """

    def __init__(self, key='affinity', residual=False, ffn=False):
        super().__init__(residual, ffn)
        self.key = key

    def __call__(self, view, x, ctx):
        aff = ctx.require(self.key, type(self).__name__)
        if not isinstance(aff, Affinity):
            aff = Affinity(weights=aff, grid=ctx.grid)
        y = view.norm1(x)
        ctx.keep_site(ctx.index, 'ln_1', y)
        v = view.linear_part(y, 'v')
        ctx.keep_site(ctx.index, 'v', v)
        v = view.split_heads(v)[:, :, ctx.num_prefix:]
        value_grid = tuple(aff.value_grid or ctx.grid)
        if value_grid != tuple(ctx.grid):
            b, h, _, d = v.shape
            v = v.transpose(2, 3).reshape(b, h * d, *ctx.grid)
            v = torch.nn.functional.interpolate(v, size=value_grid, mode='bilinear', align_corners=False)
            v = v.reshape(b, h, d, -1).transpose(2, 3)
        weights = aff.weights if aff.weights.dim() == 4 else aff.weights[:, None]
        out = view.ls1(view.project(weights.to(v.dtype) @ v))
        if self.residual:
            if tuple(aff.grid) != tuple(ctx.grid):
                raise ValueError('residual=True needs the affinity grid to equal the tower grid')
            out = x[:, ctx.num_prefix:] + out
        ctx.grid, ctx.num_prefix = tuple(aff.grid), 0
        return view.ffn(out, ctx, ctx.index) if self.ffn else out
