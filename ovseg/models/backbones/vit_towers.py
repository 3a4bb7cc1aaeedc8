"""Adapters that give the walker one view of every ViT tower: open_clip's and timm's.

A tower adapter provides ``embed`` (patch embedding, prefix tokens, positional embedding resized to the
input grid; rotary embedding when the tower has one), ``norm_pre``, ``blocks`` (block views,
:mod:`.block_views`), ``head_tokens`` (the pooling head applied to every token, into the joint
image-text space) and ``pool`` (the global embedding, equal to open_clip's ``encode_image``).

Supported towers and strategies:

===============================================  ===========================  =========================
tower                                            examples                     attention strategies
===============================================  ===========================  =========================
open_clip ``VisionTransformer``                  OpenAI / LAION ViT-B/L/H     all
open_clip ``TimmModel``, timm ``VisionTransformer``  SigLIP, SigLIP 2, DINO(v2)   all
open_clip ``TimmModel``, timm ``Eva``            EVA02                        standard only (rotary q/k)
===============================================  ===========================  =========================

Dense features of timm towers apply the tower's own pooling head to every token: for token / average
pooling its norms and linear head; for attention pooling ('map', SigLIP) MaskCLIP's value path through
the pooler (value and output projections and the pooler's MLP, no query), as MaskCLIP does for the
ResNet attention pool.
"""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.block_views import block_view
from ovseg.models.backbones.pos_embed import resize_pos_embed


class OpenCLIPViTTower:
    """open_clip ``VisionTransformer`` (``conv1``, ``class_embedding``, ``positional_embedding``,
    ``ln_pre``, ``transformer.resblocks``, ``ln_post``, ``proj``)."""

    default_pos_mode = 'bicubic'
    num_prefix = 1

    def __init__(self, visual):
        self.visual = visual
        batch_first = getattr(visual.transformer, 'batch_first', True)
        self.blocks = [block_view(b, batch_first) for b in visual.transformer.resblocks]
        self.patch_size = int(visual.patch_size[0])
        self.width = int(visual.conv1.out_channels)

    def embed(self, images, pos_mode=None):
        """(B, 3, H, W) -> tokens after the positional embedding (B, 1 + h * w, D), grid (h, w), rope None."""
        v = self.visual
        x = v.conv1(images)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = resize_pos_embed(v.positional_embedding, grid, pos_mode or self.default_pos_mode,
                               tuple(v.grid_size))
        return torch.cat([cls, x], dim=1) + pos.to(x.dtype), grid, None

    def norm_pre(self, tokens):
        return self.visual.ln_pre(self.visual.patch_dropout(tokens))

    def head_tokens(self, tokens):
        """``ln_post`` and ``proj`` on every token: (B, N, D) -> (B, N, C)."""
        if getattr(self.visual, 'attn_pool', None) is not None:
            raise NotImplementedError('Dense features of ViTs with an attentional pooler (CoCa) are not supported.')
        x = self.visual.ln_post(tokens)
        return x @ self.visual.proj if self.visual.proj is not None else x

    def pool(self, tokens):
        """The pooled embedding of ``encode_image`` from the tokens after the last block."""
        pooled, _ = self.visual._pool(tokens)
        return pooled @ self.visual.proj if self.visual.proj is not None else pooled


class TimmViTTower:
    """timm ``VisionTransformer`` / ``Eva`` trunk, bare or inside open_clip's ``TimmModel`` (``head``)."""

    default_pos_mode = 'timm'

    def __init__(self, trunk, head=None):
        self.trunk, self.head = trunk, head
        self.blocks = [block_view(b) for b in trunk.blocks]
        self.num_prefix = int(trunk.num_prefix_tokens)
        self.patch_size = int(trunk.patch_embed.patch_size[0])
        self.width = int(trunk.embed_dim)

    def embed(self, images, pos_mode=None):
        """Patch embedding, prefix tokens and the positional embedding resampled by timm for the grid."""
        if (pos_mode or 'timm') != 'timm':
            raise ValueError(f"timm towers resample positional embeddings with timm's own rule; "
                             f"pos_mode {pos_mode!r} is for open_clip ViTs")
        from timm.layers import resample_abs_pos_embed
        t, pe = self.trunk, self.trunk.patch_embed
        x = pe.proj(images)
        grid = tuple(x.shape[-2:])
        x = pe.norm(x.flatten(2).transpose(1, 2))
        pos = t.pos_embed
        if pos is not None and grid != tuple(pe.grid_size):
            prefix = 0 if getattr(t, 'no_embed_class', False) else self.num_prefix
            pos = resample_abs_pos_embed(pos, new_size=grid, old_size=pe.grid_size, num_prefix_tokens=prefix)
        prefix_tokens = [tok.expand(x.shape[0], -1, -1) for tok in (t.cls_token, getattr(t, 'reg_token', None))
                         if tok is not None]
        if getattr(t, 'no_embed_class', False):
            x = x + pos if pos is not None else x
            x = torch.cat(prefix_tokens + [x], dim=1)
        else:
            x = torch.cat(prefix_tokens + [x], dim=1)
            x = x + pos if pos is not None else x
        rope = t.rope.get_embed(shape=grid) if getattr(t, 'rope', None) is not None else None
        return x, grid, rope

    def norm_pre(self, tokens):
        return self.trunk.norm_pre(tokens)

    def _to_joint(self, x):
        x = self.trunk.head(self.trunk.fc_norm(x))
        return self.head(x) if self.head is not None else x

    def head_tokens(self, tokens):
        """The pooling head on every token (module docstring): (B, N, D) -> (B, N, C)."""
        t = self.trunk
        x = t.norm(tokens)
        pool = getattr(t, 'attn_pool', None)
        if pool is not None:
            d = x.shape[-1]
            v = F.linear(x, pool.kv.weight[d:], None if pool.kv.bias is None else pool.kv.bias[d:])
            x = pool.proj(v)
            if pool.mlp is not None:
                x = x + pool.mlp(pool.norm(x))
        return self._to_joint(x)

    def pool(self, tokens):
        x = self.trunk.forward_head(self.trunk.norm(tokens))
        return self.head(x) if self.head is not None else x


def vit_tower(visual):
    """The adapter for ``visual`` (an adapter is returned unchanged).

    Raises:
        NotImplementedError: a tower that is not a ViT the walker knows (module docstring).
    """
    if isinstance(visual, (OpenCLIPViTTower, TimmViTTower)):
        return visual
    name = type(visual).__name__
    if name == 'VisionTransformer' and hasattr(visual, 'transformer') and hasattr(visual, 'conv1'):
        return OpenCLIPViTTower(visual)
    if name == 'TimmModel' and hasattr(getattr(visual, 'trunk', None), 'blocks'):
        return TimmViTTower(visual.trunk, visual.head)
    if hasattr(visual, 'blocks') and hasattr(visual, 'patch_embed'):
        return TimmViTTower(visual)
    raise NotImplementedError(f'No ViT walker for {name}; supported: open_clip VisionTransformer, timm '
                              f'VisionTransformer / Eva (bare or in open_clip TimmModel).')


def is_vit_tower(visual):
    """True when :func:`vit_tower` accepts ``visual``."""
    try:
        vit_tower(visual)
    except NotImplementedError:
        return False
    return True


def tower_depth(visual):
    """Number of blocks of a ViT tower."""
    return len(vit_tower(visual).blocks)
