"""CorrCLIP's CLIP tower: mask-class tokens, a spatial branch and the restricted correlation, on the walker.

Reference: zdk258/CorrCLIP@103bc18 ``CorrCLIPv1/open_clip/transformer.py`` ``VisionTransformer.forward``.
The sequence is [mask-class tokens, class token, patches] (:class:`.corrclip_affinity.MaskClassLayout`).
Every block but the last runs as trained with the layout's attention mask (``QKAttention``); the outputs
of the ``num_spatial`` blocks before the second-to-last are collected (:class:`CollectingQKAttention`).
The last block (:class:`CorrCLIPLastBlock`) computes three branches:

- main and spatial: ``out_proj(A v)`` with ``v`` the value projection of ``ln_1`` of the image tokens
  (main) and of the mean of the collected outputs (spatial), class token dropped, bilinearly resized to
  the affinity's grid; ``A`` the restricted correlation (:func:`.corrclip_affinity.restricted_affinity`);
  no residual, no feed-forward;
- semantic: the whole block on the masked sequence; each location of the affinity grid takes the output
  of its region's mask-class token.

The head applies ``ln_post`` to each branch, then ``main + alpha * spatial + beta * semantic``, then
``proj``. ``num_spatial`` is CorrCLIP's rule: 5 for 12 blocks, 12 for 24, 28 for 32, else depth - 4.
"""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.attention_strategies import QKAttention, _Strategy
from ovseg.models.backbones.open_clip_backbone import OpenCLIPBackbone
from ovseg.models.backbones.vit_dense import to_grid
from ovseg.models.backbones.vit_towers import OpenCLIPViTTower, vit_tower
from ovseg.models.backbones.vit_walker import walk
from ovseg.models.utils.dense_features import DenseFeatures
from ovseg.registry import MODELS


def num_spatial_blocks(depth):
    """CorrCLIP's number of blocks averaged by the spatial branch for a tower of ``depth`` blocks."""
    return {12: 5, 24: 12, 32: 28}.get(depth, depth - 4)


@MODELS.register_module()
class CollectingQKAttention(QKAttention):
    """:class:`QKAttention` that also appends the block's output to the list ``ctx.streams[stream]``."""

    def __init__(self, mask_key=None, stream='collected'):
        super().__init__(True, True, mask_key)
        self.stream = stream
        self.is_standard = False

    def __call__(self, view, x, ctx):
        x = super().__call__(view, x, ctx)
        ctx.streams.setdefault(self.stream, []).append(x)
        return x


@MODELS.register_module()
class CorrCLIPLastBlock(_Strategy):
    """The last block's three branches (module docstring); the output holds main tokens on the affinity grid.

    Reads ``ctx.external[affinity_key]`` (an :class:`.affinity.Affinity`), ``ctx.external[layout_key]``
    (a :class:`.corrclip_affinity.MaskClassLayout`) and the collected ``ctx.streams[stream]``; leaves
    the spatial and semantic branches in ``ctx.streams['corrclip_spatial' / 'corrclip_semantic']``.
    """

    def __init__(self, affinity_key='affinity', layout_key='corrclip_layout', mask_key='mct_mask',
                 stream='spatial'):
        super().__init__(residual=False, ffn=False)
        self.affinity_key, self.layout_key, self.mask_key, self.stream = affinity_key, layout_key, mask_key, stream

    def __call__(self, view, x, ctx):
        who = type(self).__name__
        aff, layout = ctx.require(self.affinity_key, who), ctx.require(self.layout_key, who)
        n = layout.num_tokens
        collected = ctx.streams.get(self.stream)
        if not collected:
            raise KeyError(f'{who} needs the outputs of the spatial blocks in ctx.streams[{self.stream!r}]')
        b = x.shape[0]
        both = torch.cat([x[:, n:], torch.stack(collected).mean(0)[:, n:]])  # main, spatial: (2B, 1 + hw, D)
        v = view.linear_part(view.norm1(both), 'v')[:, 1:]
        v = v.transpose(1, 2).reshape(2 * b, -1, *ctx.grid)
        v = F.interpolate(v, size=tuple(aff.grid), mode='bilinear', align_corners=False).flatten(2).transpose(1, 2)
        weights = aff.weights.to(v.dtype)
        out = view.project(torch.bmm(torch.cat([weights, weights]), v))
        mct = view.forward(x, ctx, attn_mask=ctx.require(self.mask_key, who), index=ctx.index)[:, :n]
        semantic = layout.expand.to(mct.dtype).transpose(1, 2) @ mct
        ctx.streams['corrclip_spatial'], ctx.streams['corrclip_semantic'] = out[b:], semantic
        ctx.grid, ctx.num_prefix = tuple(aff.grid), 0
        return out[:b]


@MODELS.register_module()
class CorrCLIPBackbone(OpenCLIPBackbone):
    """A frozen open_clip ViT with CorrCLIP's tower (module docstring); ``forward`` needs the restriction.

    Args:
        alpha (float): weight of the spatial branch. Default 1.0.
        beta (float): weight of the semantic branch. Default 0.5.
        num_spatial (int, optional): blocks averaged by the spatial branch; default CorrCLIP's rule.
        pos_mode (str): positional-embedding resize. Default 'bicubic_scale' (the original's).
        **kwargs: :class:`OpenCLIPBackbone` arguments (``model_name``, ``pretrained``, ``checkpoint``,
            ``arch``); ``attention`` is set here.
    """

    def __init__(self, alpha=1.0, beta=0.5, num_spatial=None, pos_mode='bicubic_scale', **kwargs):
        kwargs.pop('attention', None)
        super().__init__(attention=(), pos_mode=pos_mode, **kwargs)
        tower = vit_tower(self.clip.visual)
        if not isinstance(tower, OpenCLIPViTTower):
            raise NotImplementedError('CorrCLIP applies ln_post per branch: it needs an open_clip VisionTransformer.')
        depth = len(tower.blocks)
        self.num_spatial = num_spatial_blocks(depth) if num_spatial is None else int(num_spatial)
        if not 0 < self.num_spatial <= depth - 2:
            raise ValueError(f'num_spatial must be in 1..{depth - 2} for {depth} blocks, got {self.num_spatial}')
        spatial = range(depth - 2 - self.num_spatial, depth - 2)
        self._strategies = {i: (CollectingQKAttention('mct_mask', 'spatial') if i in spatial
                                else QKAttention(mask_key='mct_mask')) for i in range(depth - 1)}
        self._strategies[depth - 1] = CorrCLIPLastBlock()
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, x, affinity=None, layout=None):
        """(B, 3, H, W) windows, their restricted ``affinity`` and ``layout`` -> DenseFeatures on the
        affinity's grid."""
        return self.walk_branches(x, affinity, layout)[1]

    def walk_branches(self, x, affinity, layout, taps=()):
        """The walk and its features: (WalkResult with the branches in ``streams``, DenseFeatures).

        ``taps`` (walker names, e.g. 'blocks.3') index the sequence [mask-class tokens, class, patches].
        """
        if affinity is None or layout is None:
            raise ValueError('CorrCLIPBackbone needs the restricted affinity and the mask-class layout of the '
                             'windows (CorrCLIPSegmentor computes them from the proposals).')
        tower = vit_tower(self.clip.visual)
        tokens, grid, _ = tower.embed(x, self.pos_mode)
        tokens = tower.norm_pre(tokens)
        seq = torch.cat([tokens[:, :1].expand(-1, layout.num_tokens, -1), tokens], dim=1)
        external = dict(affinity=affinity, corrclip_layout=layout, mct_mask=layout.attn_mask.to(tokens.dtype))
        result = walk(tower, tokens=seq, normed=True, grid=grid, strategies=self._strategies, external=external,
                      taps=taps)
        visual = self.clip.visual
        feats = visual.ln_post(result.tokens) + self.alpha * visual.ln_post(result.streams['corrclip_spatial']) \
            + self.beta * visual.ln_post(result.streams['corrclip_semantic'])
        feats = feats @ visual.proj if visual.proj is not None else feats
        _, dense = to_grid(feats, result.grid, 0)
        return result, DenseFeatures(dense=dense)
