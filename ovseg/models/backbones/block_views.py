"""One interface to the weights of a ViT block, whatever library built it.

The walker (:mod:`.vit_walker`) and the attention strategies (:mod:`.attention_strategies`) never touch a
block's attributes directly; they go through a view:

- :class:`OpenCLIPBlockView`: open_clip ``ResidualAttentionBlock`` with ``nn.MultiheadAttention``
  (OpenAI / open_clip ViTs): every strategy;
- :class:`TimmBlockView`: timm ``Block`` with ``Attention`` (SigLIP, SigLIP 2, DINO, DINOv2 trunks, ...):
  every strategy;
- :class:`OpaqueBlockView`: any other block (timm EVA with rotary embeddings, open_clip blocks with
  extra norms or cross-attention): only the block's own forward (the standard strategy); a strategy that
  needs q, k or v raises a :class:`NotImplementedError` naming the block type.

Tokens are batch-first (B, N, D); q, k, v are split per head as (B, heads, N, D // heads), heads in the
order of the packed projection (the layout every reference uses).
"""
import torch.nn as nn
import torch.nn.functional as F

_IDENTITY = nn.Identity()


class BlockView:
    """Base view: the standard block forward; subclasses expose the parts strategies need.

    Attributes:
        block (nn.Module): the wrapped block.
        num_heads (int): attention heads.
    """

    supports_parts = True

    def __init__(self, block):
        self.block = block

    @property
    def head_dim(self):
        return self.width // self.num_heads

    def unsupported(self, what):
        raise NotImplementedError(
            f'{what} needs the q/k/v projections of the block, which ovseg cannot read from '
            f'{type(self.block).__name__} blocks; only the standard attention works on this tower.')

    def split_heads(self, x):
        """(B, N, D) -> (B, heads, N, D // heads)."""
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    @staticmethod
    def merge_heads(x):
        """(B, heads, N, d) -> (B, N, heads * d)."""
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def qkv(self, y, ctx=None):
        """q, k, v of normalised tokens ``y`` (B, N, D), each (B, heads, N, D // heads)."""
        return self.split_heads_qkv(self.qkv_linear(y))

    def split_heads_qkv(self, qkv):
        b, n, three_d = qkv.shape
        d = three_d // 3
        q, k, v = qkv.view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def project(self, x):
        """Attention output (B, heads, N, d) or (B, N, D) -> the block's output projection (B, N, D)."""
        if x.dim() == 4:
            x = self.merge_heads(x)
        return self.out_proj(x)

    def attention(self, y, ctx=None, attn_mask=None, index=None):
        """Standard scaled dot-product attention of normalised tokens -> projected (B, N, D)."""
        q, k, v = self.qkv(y, ctx)
        if ctx is not None and ctx.wants_site(index):
            for site, value in zip('qkv', (q, k, v)):
                if ctx.wants_site(index, site):
                    ctx.keep_site(index, site, self.merge_heads(value))
        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        return self.project(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask))

    def forward(self, x, ctx=None, attn_mask=None, index=None):
        """The block as trained: ``x + ls1(attn(norm1 x))``, then ``+ ls2(mlp(norm2 x))``.

        With a walk context, the sites the caller asked for ('ln_1', 'q', 'k', 'v', 'ln_2', 'mlp') are kept.
        """
        y = self.norm1(x)
        if ctx is not None:
            ctx.keep_site(index, 'ln_1', y)
        x = x + self.ls1(self.attention(y, ctx, attn_mask, index))
        return self.ffn(x, ctx, index)

    def ffn(self, x, ctx=None, index=None):
        """``x + ls2(mlp(norm2 x))`` (the feed-forward half of the block)."""
        z = self.norm2(x)
        m = self.mlp(z)
        if ctx is not None:
            ctx.keep_site(index, 'ln_2', z)
            ctx.keep_site(index, 'mlp', m)
        return x + self.ls2(m)


class OpenCLIPBlockView(BlockView):
    """open_clip ``ResidualAttentionBlock`` (``ln_1``, ``attn`` = ``nn.MultiheadAttention``, ``ls_1``,
    ``ln_2``, ``mlp``, ``ls_2``)."""

    def __init__(self, block):
        super().__init__(block)
        self.attn = block.attn
        self.num_heads = self.attn.num_heads
        self.width = self.attn.embed_dim
        self.norm1, self.norm2, self.mlp = block.ln_1, block.ln_2, block.mlp
        self.ls1 = getattr(block, 'ls_1', _IDENTITY)
        self.ls2 = getattr(block, 'ls_2', _IDENTITY)

    def qkv_linear(self, y):
        return F.linear(y, self.attn.in_proj_weight, self.attn.in_proj_bias)

    def linear_part(self, y, which):
        """One of the packed projections ('q', 'k' or 'v') on (B, N, D) tokens -> (B, N, D)."""
        d = self.width
        i = 'qkv'.index(which)
        bias = self.attn.in_proj_bias
        return F.linear(y, self.attn.in_proj_weight[i * d:(i + 1) * d],
                        None if bias is None else bias[i * d:(i + 1) * d])

    def out_proj(self, x):
        return self.attn.out_proj(x)


class TimmBlockView(BlockView):
    """timm ``Block`` with ``Attention`` (``norm1``, ``attn.qkv``, ``attn.q_norm``/``k_norm``,
    ``attn.norm``, ``attn.proj``, ``ls1``, ``norm2``, ``mlp``, ``ls2``)."""

    def __init__(self, block):
        super().__init__(block)
        self.attn = block.attn
        self.num_heads = self.attn.num_heads
        self.width = self.attn.qkv.in_features
        self.norm1, self.norm2, self.mlp = block.norm1, block.norm2, block.mlp
        self.ls1 = getattr(block, 'ls1', _IDENTITY)
        self.ls2 = getattr(block, 'ls2', _IDENTITY)

    def qkv_linear(self, y):
        return self.attn.qkv(y)

    def qkv(self, y, ctx=None):
        q, k, v = self.split_heads_qkv(self.qkv_linear(y))
        return self.attn.q_norm(q), self.attn.k_norm(k), v

    def linear_part(self, y, which):
        d = self.width
        i = 'qkv'.index(which)
        bias = self.attn.qkv.bias
        return F.linear(y, self.attn.qkv.weight[i * d:(i + 1) * d], None if bias is None else bias[i * d:(i + 1) * d])

    def out_proj(self, x):
        return self.attn.proj(self.attn.norm(x))


class OpaqueBlockView(BlockView):
    """Any other block: its own forward only (``rope`` from the walk context for EVA-style blocks)."""

    supports_parts = False

    def __init__(self, block, batch_first=True):
        super().__init__(block)
        self.batch_first = batch_first

    def norm1(self, x):
        self.unsupported('This attention strategy')

    def qkv(self, y, ctx=None):
        self.unsupported('This attention strategy')

    def linear_part(self, y, which):
        self.unsupported('This attention strategy')

    def out_proj(self, x):
        self.unsupported('This attention strategy')

    def forward(self, x, ctx=None, attn_mask=None, index=None):
        if ctx is not None and ctx.wants_site(index):
            raise NotImplementedError(f'Token sites inside {type(self.block).__name__} blocks cannot be '
                                      f'read; tap the block output (blocks.{index}) instead.')
        kwargs = {}
        if ctx is not None and ctx.rope is not None:
            kwargs['rope'] = ctx.rope
        if attn_mask is not None:
            kwargs['attn_mask'] = attn_mask
        if self.batch_first:
            return self.block(x, **kwargs)
        return self.block(x.transpose(0, 1), **kwargs).transpose(0, 1)

    def ffn(self, x, ctx=None, index=None):
        self.unsupported('Running the feed-forward alone')


def _is_plain_open_clip(block):
    attn = getattr(block, 'attn', None)
    return (isinstance(attn, nn.MultiheadAttention) and attn._qkv_same_embed_dim and attn.bias_k is None
            and not hasattr(block, 'ln_1_kv') and hasattr(block, 'ln_1') and hasattr(block, 'mlp')
            and isinstance(getattr(block, 'ln_attn', _IDENTITY), nn.Identity))


def _is_plain_timm(block):
    attn = getattr(block, 'attn', None)
    return (type(block).__name__ == 'Block' and type(attn).__name__ == 'Attention'
            and hasattr(attn, 'qkv') and getattr(attn, 'gate', None) is None)


def block_view(block, batch_first=True):
    """The view for ``block`` (module docstring: which blocks support which strategies)."""
    if _is_plain_open_clip(block):
        return OpenCLIPBlockView(block)
    if _is_plain_timm(block):
        return TimmBlockView(block)
    return OpaqueBlockView(block, batch_first)


def is_plain_block(block):
    """True for blocks whose parts the strategies can use (open_clip MHA or timm ``Block``)."""
    return _is_plain_open_clip(block) or _is_plain_timm(block)


def split_heads(x, heads):
    """(B, N, D) -> (B, heads, N, D // heads)."""
    b, n, d = x.shape
    return x.view(b, n, heads, d // heads).transpose(1, 2)


def merge_heads(x):
    """(B, heads, N, d) -> (B, N, heads * d)."""
    return BlockView.merge_heads(x)


__all__ = ['BlockView', 'OpaqueBlockView', 'OpenCLIPBlockView', 'TimmBlockView', 'block_view', 'is_plain_block',
           'merge_heads', 'split_heads']
