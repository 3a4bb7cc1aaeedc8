"""Dense features of a ViT tower: the walker's tokens through the tower head, as :class:`DenseFeatures`.

By default the last block is MaskCLIP's value path (METHODS.md, MaskCLIP): its normalised input goes
through the value and output projections at every token, then the block's MLP; everything before runs
unchanged, positional embeddings resized bicubically for any input size. Other per-block attention
strategies (SCLIP, ClearCLIP, NACLIP, value-value, external affinities) are chosen with ``attention``.
"""
from ovseg.models.backbones.pos_embed import resize_pos_embed
from ovseg.models.backbones.vit_towers import vit_tower
from ovseg.models.backbones.vit_walker import build_strategies, walk
from ovseg.models.utils.dense_features import DenseFeatures

# MaskCLIP: the value path in the last block (ovseg's default dense features of a CLIP ViT).
MASKCLIP_ATTENTION = (dict(type='MaskCLIPValueAttention', blocks=-1),)


def interpolate_pos_embed(pos_embed, grid_size, new_size):
    """Resize a (1 + gh*gw, D) positional embedding to (1 + h*w, D), bicubic (kept for old callers)."""
    return resize_pos_embed(pos_embed, new_size, 'bicubic', grid_size)


def to_grid(tokens, grid, num_prefix=1):
    """(B, P + h*w, D) -> first prefix token (B, D) or None, and the patch grid (B, D, h, w)."""
    b, _, d = tokens.shape
    patches = tokens[:, num_prefix:].transpose(1, 2).reshape(b, d, grid[0], grid[1])
    return (tokens[:, 0] if num_prefix else None), patches


def vit_dense_forward(visual, x, token_layers=(), with_global=False, attention=MASKCLIP_ATTENTION,
                      external=None, pos_mode=None, strategies=None, head=True):
    """Run a ViT tower and return :class:`DenseFeatures`.

    Args:
        visual: open_clip ``VisionTransformer`` or ``TimmModel`` with a ViT trunk (:mod:`.vit_towers`).
        x (Tensor): (B, 3, H, W) normalised images (sides floored to the patch size).
        token_layers (Sequence[str]): taps to return in ``tokens`` (:mod:`.vit_walker`), e.g.
            ``'resblocks.-3.ln_2'`` (CLIP-DINOiser), ``'resblocks.5'`` (block output), ``'last_keys'``
            (MaskCLIP+ key smoothing).
        with_global (bool): also the pooled image embedding (the tower as trained). Default False.
        attention (Sequence[dict]): per-block strategy configs; default MaskCLIP's value path in the last
            block.
        external (dict, optional): inputs of strategies that take them (affinities, masks).
        pos_mode (str, optional): positional-embedding resize (:mod:`.pos_embed`); default the tower's.
        strategies (dict, optional): already built {block: strategy}; overrides ``attention``.
        head (bool): apply the tower head (``ln_post``, ``proj``) to ``dense``; False returns the tokens
            after the last block instead (B, D, h, w). Default True.

    Returns:
        DenseFeatures: ``dense`` (B, C, h, w) after the tower head, ``tokens`` / ``cls_tokens`` of the taps,
        ``global_feat`` (B, C) with ``with_global``.
    """
    tower = vit_tower(visual)
    if strategies is None:
        strategies = build_strategies(attention, len(tower.blocks))
    result = walk(tower, x, strategies=strategies, taps=tuple(token_layers), external=external,
                  with_plain=with_global, pos_mode=pos_mode)
    tokens, cls_tokens = {}, {}
    for name, value in result.taps.items():
        grid, prefix = result.tap_layout[name]
        cls, tokens[name] = to_grid(value, grid, prefix)
        if cls is not None:
            cls_tokens[name] = cls
    tokens_out = tower.head_tokens(result.tokens) if head else result.tokens
    _, dense = to_grid(tokens_out, result.grid, result.num_prefix)
    global_feat = tower.pool(result.plain) if with_global else None
    return DenseFeatures(dense=dense, tokens=tokens, global_feat=global_feat, cls_tokens=cls_tokens)


def vit_all_tokens(visual, x):
    """The tower as trained on every token: embedding, blocks, ``ln_post`` and projection (B, N, C)."""
    tower = vit_tower(visual)
    return tower.head_tokens(walk(tower, x).tokens)
