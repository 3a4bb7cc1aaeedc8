"""Dual-path ViT forward with value-value (V-V) attention, shared by AnoVL and AnomalyCLIP (DPAM).

In a *dual* block the normalised input of the **original** path gives q, k, v (per head, scale
``head_dim ** -0.5``). The original path is the plain CLIP block: ``x_ori += proj(softmax(q k^T s) v)``
then ``x_ori += mlp(ln_2(x_ori))``. The V-V path adds ``proj(softmax(v v^T s) v)`` (queries and keys
replaced by the values) to its own running tokens and **skips the MLP**. The first dual block starts
both paths from the same input (the output of the last plain block, or the embedded tokens).

Reference behaviour kept here (CLIP Surgery lineage: hq-deng/AnoVL, zqhang/AnomalyCLIP):

- q, k, v of *both* paths come from ``ln_1`` of the original-path tokens, never from the V-V tokens.
- AnoVL's original path normalises its attention with a plain ``exp(a) / sum(exp(a))`` (no max
  subtraction); ``use_plain_softmax=True`` reproduces it (falling back to the stable softmax where
  it would overflow, i.e. for logits above ~88, instead of returning NaN).
- LayerScale (``ls_1`` / ``ls_2``) of open_clip blocks is applied when present (identity for CLIP).

Tokens are batch-first (B, N, D) throughout; open_clip towers with ``batch_first=False`` are handled.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

_IDENTITY = nn.Identity()


def plain_softmax(logits):
    """``exp(x) / sum(exp(x))`` over the last dim, without the max subtraction (AnoVL's own softmax).

    Where that overflows (a logit above ~88 in float32) the reference returns NaN; the stable softmax,
    equal up to rounding, is used instead for the whole tensor.
    """
    e = logits.exp()
    if not torch.isfinite(e).all():
        return logits.softmax(dim=-1)
    return e / e.sum(dim=-1, keepdim=True)


def split_heads_qkv(attn, x):
    """q, k, v of an ``nn.MultiheadAttention`` for batch-first tokens.

    Args:
        attn (nn.MultiheadAttention): packed ``in_proj_weight`` (3D, D) and optional ``in_proj_bias``.
        x (Tensor): (B, N, D) normalised tokens.

    Returns:
        tuple[Tensor, Tensor, Tensor]: each (B, heads, N, D // heads).
    """
    b, n, d = x.shape
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def _merge_heads(x):
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def dual_path_attention(attn, x, with_vv=True, use_plain_softmax=False):
    """Attention residuals of both paths from one normalised input.

    Args:
        attn (nn.MultiheadAttention): the block's attention (its weights, not its forward).
        x (Tensor): (B, N, D) ``ln_1`` of the original-path tokens.
        with_vv (bool): also compute the V-V residual. Default True.
        use_plain_softmax (bool): original path normalised by :func:`plain_softmax`. Default False.

    Returns:
        tuple[Tensor | None, Tensor]: V-V residual (None without ``with_vv``) and original residual,
        each (B, N, D) after the output projection.
    """
    q, k, v = split_heads_qkv(attn, x)
    scale = q.shape[-1] ** -0.5
    logits = (q @ k.transpose(-2, -1)) * scale
    weights = plain_softmax(logits) if use_plain_softmax else logits.softmax(dim=-1)
    out_proj = attn.out_proj
    ori = F.linear(_merge_heads(weights @ v), out_proj.weight, out_proj.bias)
    if not with_vv:
        return None, ori
    vv_weights = ((v @ v.transpose(-2, -1)) * scale).softmax(dim=-1)
    vv = F.linear(_merge_heads(vv_weights @ v), out_proj.weight, out_proj.bias)
    return vv, ori


def dual_path_block(block, x_vv, x_ori, use_plain_softmax=False, record=None):
    """One dual block of an open_clip ``ResidualAttentionBlock``.

    Args:
        block (ResidualAttentionBlock): open_clip block (``ln_1``, ``attn``, ``ln_2``, ``mlp``).
        x_vv (Tensor | None): (B, N, D) V-V path tokens; None runs the original path only.
        x_ori (Tensor): (B, N, D) original path tokens.
        use_plain_softmax (bool): see :func:`dual_path_attention`. Default False.
        record (list, optional): receives the original-path tokens after the attention residual and
            before the MLP (the state AnoVL's in-place update leaves in its returned token list).

    Returns:
        tuple[Tensor | None, Tensor]: new (x_vv, x_ori).
    """
    ls_1 = getattr(block, 'ls_1', _IDENTITY)
    ls_2 = getattr(block, 'ls_2', _IDENTITY)
    vv_res, ori_res = dual_path_attention(block.attn, block.ln_1(x_ori), x_vv is not None, use_plain_softmax)
    x_ori = x_ori + ls_1(ori_res)
    if record is not None:
        record.append(x_ori)
    x_ori = x_ori + ls_2(block.mlp(block.ln_2(x_ori)))
    return (None if x_vv is None else x_vv + ls_1(vv_res)), x_ori


def _plain_block(block, x, batch_first):
    """open_clip block forward on batch-first tokens (no attention mask: vision tower)."""
    if batch_first:
        return block(x)
    return block(x.transpose(0, 1)).transpose(0, 1)


def dual_path_transformer(visual, x, num_dual, taps=(), with_vv=True, use_plain_softmax=False,
                          record_mid=False):
    """Run a ViT's blocks: plain blocks first, the last ``num_dual`` blocks dual-path.

    Args:
        visual (VisionTransformer): open_clip vision tower (``transformer.resblocks``).
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
    blocks = visual.transformer.resblocks
    depth = len(blocks)
    if not 0 <= num_dual <= depth:
        raise ValueError(f'num_dual must be in [0, {depth}], got {num_dual}')
    bad = [t for t in taps if not 1 <= t <= depth]
    if bad:
        raise ValueError(f'tapped blocks {bad} outside 1..{depth} (1-based block indices)')
    batch_first = getattr(visual.transformer, 'batch_first', True)
    first_dual = depth - num_dual
    out = dict(vv={}, ori={}, mid={})
    x_vv, x_ori = None, x
    for i, block in enumerate(blocks):
        if i < first_dual:
            x_ori = _plain_block(block, x_ori, batch_first)
        else:
            if i == first_dual and with_vv:
                x_vv = x_ori
            record = [] if record_mid else None
            x_vv, x_ori = dual_path_block(block, x_vv, x_ori, use_plain_softmax, record)
            if record_mid:
                out['mid'][i + 1] = record[0]
        if i + 1 in taps:
            out['ori'][i + 1] = x_ori
            out['vv'][i + 1] = x_vv if x_vv is not None else x_ori
    out['last_vv'], out['last_ori'] = x_vv, x_ori
    return out


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
    x = visual.conv1(images)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype,
                                                           device=x.device)
    pos = resize_pos_embed(visual.positional_embedding, grid, pos_mode)
    x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
    return visual.ln_pre(x), grid


def resize_pos_embed(pos_embed, grid, mode='bicubic'):
    """(1 + g * g, D) square positional embedding -> (1 + h * w, D); the class row is kept.

    The stored grid side is inferred from the row count (as AnomalyCLIP does), so the result does not
    depend on earlier calls (AnomalyCLIP overwrites its parameter in place on the first call instead).
    """
    side = int(round((pos_embed.shape[0] - 1) ** 0.5))
    if (side, side) == tuple(grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    body = pos_embed[1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    body = F.interpolate(body.float(), size=tuple(grid), mode=mode, align_corners=False).to(pos_embed.dtype)
    return torch.cat([pos_embed[:1], body.reshape(dim, -1).t()], dim=0)


def project_tokens(visual, tokens, with_ln_post=True):
    """``ln_post`` (optional) and the visual ``proj`` applied to every token: (B, N, D) -> (B, N, C)."""
    x = visual.ln_post(tokens) if with_ln_post else tokens
    return x @ visual.proj if visual.proj is not None else x
