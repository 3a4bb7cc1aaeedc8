"""Dual-path ViT forward with value-value (V-V) attention, shared by AnoVL and AnomalyCLIP (DPAM).

In a *dual* block the normalised input of the **original** path gives q, k, v (per head, scale
``head_dim ** -0.5``). The original path is the plain CLIP block: ``x_ori += proj(softmax(q k^T s) v)``
then ``x_ori += mlp(ln_2(x_ori))``. The V-V path adds ``proj(softmax(v v^T s) v)`` (queries and keys
replaced by the values) to its own running tokens and **skips the MLP**. The first dual block starts
both paths from the same input (the output of the last plain block, or the embedded tokens). The blocks
run through the walker with :class:`.attention_strategies.ValueValueAttention` in the dual blocks.

Reference behaviour kept here (CLIP Surgery lineage: hq-deng/AnoVL, zqhang/AnomalyCLIP):

- q, k, v of *both* paths come from ``ln_1`` of the original-path tokens, never from the V-V tokens.
- AnoVL's original path normalises its attention with a plain ``exp(a) / sum(exp(a))`` (no max
  subtraction); ``use_plain_softmax=True`` reproduces it (falling back to the stable softmax where
  it would overflow, i.e. for logits above ~88, instead of returning NaN).
- LayerScale (``ls_1`` / ``ls_2``) of open_clip blocks is applied when present (identity for CLIP).
"""
from ovseg.models.backbones.attention_strategies import ValueValueAttention, plain_softmax
from ovseg.models.backbones.pos_embed import resize_pos_embed as _resize
from ovseg.models.backbones.vit_tokens import project_tokens, tokens_with_position
from ovseg.models.backbones.vit_towers import vit_tower
from ovseg.models.backbones.vit_walker import walk


def resize_pos_embed(pos_embed, grid, mode='bicubic'):
    """(1 + g * g, D) square positional embedding -> (1 + h * w, D); the class row is kept.

    The stored grid side is inferred from the row count (as AnomalyCLIP does), so the result does not
    depend on earlier calls (AnomalyCLIP overwrites its parameter in place on the first call instead).
    """
    return _resize(pos_embed, grid, mode)


def embed_tokens(visual, images, pos_mode='bicubic'):
    """Patch embedding + class token + positional embedding (resized to the grid) + ``ln_pre``.

    Args:
        visual (VisionTransformer): open_clip vision tower.
        images (Tensor): (B, 3, H, W) normalised images, H and W multiples of the patch size.
        pos_mode (str): interpolation of the positional grid for other input sizes, 'bicubic'
            (open_clip / MaskCLIP convention) or 'bilinear' (AnomalyCLIP); ``align_corners=False``.

    Returns:
        tuple[Tensor, tuple[int, int]]: (B, 1 + h * w, D) tokens and the grid (h, w).
    """
    tokens, grid = tokens_with_position(visual, images, pos_mode)
    return vit_tower(visual).norm_pre(tokens), grid


def dual_path_transformer(visual, x, num_dual, taps=(), with_vv=True, use_plain_softmax=False,
                          record_mid=False):
    """Run a ViT's blocks: plain blocks first, the last ``num_dual`` blocks dual-path.

    Args:
        visual (VisionTransformer): open_clip vision tower.
        x (Tensor): (B, N, D) embedded tokens after ``ln_pre``.
        num_dual (int): number of last blocks with the V-V path (0..num_blocks).
        taps (Sequence[int]): 1-based block indices whose outputs to keep.
        with_vv (bool): compute the V-V path (False: original path only, e.g. for the class token).
        use_plain_softmax (bool): original-path attention with :func:`plain_softmax`. Default False.
        record_mid (bool): keep the original path after each dual block's attention residual.

    Returns:
        dict: ``vv`` {tap: (B, N, D)} (V-V path of tapped dual blocks, the plain output of tapped plain
        blocks), ``ori`` {tap: (B, N, D)} (original path), ``mid`` {block: (B, N, D)} (only with
        ``record_mid``), ``last_vv`` and ``last_ori`` (B, N, D) after the last block (``last_vv`` is
        None without ``with_vv`` or dual blocks).
    """
    tower = vit_tower(visual)
    depth = len(tower.blocks)
    if not 0 <= num_dual <= depth:
        raise ValueError(f'num_dual must be in [0, {depth}], got {num_dual}')
    bad = [t for t in taps if not 1 <= t <= depth]
    if bad:
        raise ValueError(f'tapped blocks {bad} outside 1..{depth} (1-based block indices)')
    first_dual = depth - num_dual
    strategy = ValueValueAttention(plain_softmax=use_plain_softmax, with_vv=with_vv)
    strategies = {i: strategy for i in range(first_dual, depth)}
    names = [f'blocks.{t - 1}' for t in taps]
    if record_mid:
        names += [f'blocks.{i}.attn_residual' for i in range(first_dual, depth)]
    result = walk(tower, tokens=x, normed=True, strategies=strategies, taps=names, stream_taps=True)
    out = dict(vv={}, ori={}, mid={})
    for t in taps:
        x_ori = result.taps[f'blocks.{t - 1}']
        out['ori'][t] = x_ori
        out['vv'][t] = result.stream_taps.get(t - 1, {}).get('vv', x_ori)
    if record_mid:
        out['mid'] = {i + 1: result.taps[f'blocks.{i}.attn_residual'] for i in range(first_dual, depth)}
    out['last_vv'], out['last_ori'] = result.streams.get('vv'), result.tokens
    return out


__all__ = ['dual_path_transformer', 'embed_tokens', 'plain_softmax', 'project_tokens', 'resize_pos_embed']
