"""MaskCLIP dense features from an open_clip ``VisionTransformer``.

The last block skips query-key attention: its normalised input goes through the value and output
projections at every token, then the block's MLP (METHODS.md, MaskCLIP). Everything before it runs
unchanged; positional embeddings are resized bicubically for any input size.
"""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.attention_block import block_forward
from ovseg.models.utils.dense_features import DenseFeatures


def interpolate_pos_embed(pos_embed, grid_size, new_size):
    """Resize a (1 + gh*gw, D) positional embedding to (1 + h*w, D); the class row is untouched.

    Uses torch bicubic interpolation with ``align_corners=False`` (as MaskCLIP / CLIP-DINOiser).
    """
    if tuple(grid_size) == tuple(new_size):
        return pos_embed
    cls_pos, grid = pos_embed[:1], pos_embed[1:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, grid_size[0], grid_size[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new_size, mode='bicubic', align_corners=False).to(pos_embed.dtype)
    return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(-1, dim)], dim=0)


def _check_supported(visual):
    if getattr(visual, 'attn_pool', None) is not None:
        raise NotImplementedError('Dense features for ViTs with an attentional pooler (CoCa) are not supported.')
    block = visual.transformer.resblocks[-1]
    if not isinstance(getattr(block, 'attn', None), torch.nn.MultiheadAttention):
        raise NotImplementedError(f'MaskCLIP path needs nn.MultiheadAttention blocks, got {type(block).__name__}.')


def _resolve(transformer, name):
    """'resblocks.-3.ln_2' -> the module; negative indices count from the last block."""
    module = transformer
    for part in name.split('.'):
        module = module[int(part)] if part.lstrip('-').isdigit() else getattr(module, part)
    return module


def _embed(visual, x):
    """Patch embedding + class token + resized positional embedding + ln_pre. Returns (B, 1+hw, D), (h, w)."""
    x = visual.conv1(x)
    h, w = x.shape[-2:]
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    pos = interpolate_pos_embed(visual.positional_embedding, visual.grid_size, (h, w))
    x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
    return visual.ln_pre(x), (h, w)


def _value_path(block, x, want_keys):
    """Last block without q-k attention: x + out_proj(v(ln_1 x)), then the MLP. Also returns the keys."""
    attn = block.attn
    dim = x.shape[-1]
    y = block.ln_1(x)
    w_k, w_v = attn.in_proj_weight[dim:2 * dim], attn.in_proj_weight[2 * dim:]
    b_k, b_v = (attn.in_proj_bias[dim:2 * dim], attn.in_proj_bias[2 * dim:]) \
        if attn.in_proj_bias is not None else (None, None)
    v = F.linear(y, w_v, b_v)
    x = x + block.ls_1(attn.out_proj(v))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    keys = F.linear(y, w_k, b_k) if want_keys else None
    return x, keys


def _to_grid(tokens, hw):
    """(B, 1+hw, D) -> class token (B, D) and grid (B, D, h, w)."""
    b, _, d = tokens.shape
    return tokens[:, 0], tokens[:, 1:].transpose(1, 2).reshape(b, d, hw[0], hw[1])


def vit_dense_forward(visual, x, token_layers=(), with_global=False):
    """Run an open_clip ViT and return MaskCLIP :class:`DenseFeatures`.

    Args:
        visual (VisionTransformer): open_clip vision tower.
        x (Tensor): (B, 3, H, W) normalised images, H and W multiples of the patch size.
        token_layers (Sequence[str]): submodules of ``visual.transformer`` whose outputs to return, e.g.
            ``'resblocks.-3.ln_2'`` (CLIP-DINOiser), ``'resblocks.5'`` (block output); ``'last_keys'``
            gives the last block's attention keys (MaskCLIP+ key smoothing).
        with_global (bool): also run the real last block for the pooled image embedding. Default False.
    """
    _check_supported(visual)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, 'batch_first', True)
    captured, handles, block_names = {}, [], {}
    for name in token_layers:
        if name == 'last_keys':
            continue
        module = _resolve(visual.transformer, name)
        if any(module is blk for blk in blocks):
            block_names[id(module)] = name  # block outputs are captured in the loop below
            continue

        def hook(_module, _inp, out, name=name):
            captured[name] = out if batch_first else out.transpose(0, 1)
        handles.append(module.register_forward_hook(hook))
    try:
        x, hw = _embed(visual, x)
        for block in blocks[:-1]:
            x = _run_block(block, x, batch_first)
            if id(block) in block_names:
                captured[block_names[id(block)]] = x
        pre_last = x
        x, keys = _value_path(blocks[-1], x, 'last_keys' in token_layers)
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in token_layers if n != 'last_keys' and n not in captured]
    if missing:
        raise KeyError(f'Token layers {missing} produced no output; use blocks (resblocks.i) or their '
                       f'ln_1 / ln_2 / mlp submodules.')
    tokens, cls_tokens = {}, {}
    for name, value in captured.items():
        cls_tokens[name], tokens[name] = _to_grid(value, hw)
    if keys is not None:
        cls_tokens['last_keys'], tokens['last_keys'] = _to_grid(keys, hw)
    x = visual.ln_post(x)
    if visual.proj is not None:
        x = x @ visual.proj
    _, dense = _to_grid(x, hw)
    global_feat = _global(visual, blocks[-1], pre_last, batch_first) if with_global else None
    return DenseFeatures(dense=dense, tokens=tokens, global_feat=global_feat, cls_tokens=cls_tokens)


def _run_block(block, x, batch_first):
    """One block on batch-first tokens, whatever layout the open_clip version uses inside."""
    if batch_first:
        return block_forward(block, x)
    return block(x.transpose(0, 1)).transpose(0, 1)


def _global(visual, block, x, batch_first):
    x = _run_block(block, x, batch_first)
    pooled, _ = visual._pool(x) if hasattr(visual, '_pool') else (visual.ln_post(x[:, 0]), None)
    return pooled @ visual.proj if visual.proj is not None else pooled
