"""One open_clip transformer block run on contiguous (B, L, D) tokens with fused attention.

``nn.MultiheadAttention(batch_first=True)`` transposes its input to (L, B, D) before the input projection;
under CPU bf16 autocast the projection of that non-contiguous view falls off oneDNN's fast path (about 20x
slower for a batch of 3 windows at 448 px, measured with torch 2.14). Running the same weights through
``F.linear`` on the contiguous tokens and ``F.scaled_dot_product_attention`` gives the same result (up to
float summation order) at full speed in every precision.
"""
import torch
import torch.nn.functional as F


def is_plain_block(block):
    """True for open_clip's ``ResidualAttentionBlock`` with a plain ``nn.MultiheadAttention`` inside."""
    attn = getattr(block, 'attn', None)
    return (isinstance(attn, torch.nn.MultiheadAttention) and attn._qkv_same_embed_dim
            and not hasattr(block, 'ln_1_kv') and hasattr(block, 'ls_1') and attn.bias_k is None)


def attention(attn, x, attn_mask=None):
    """Self-attention of ``attn``'s weights on (B, L, D) tokens -> (B, L, D), before ``out_proj``."""
    b, n, d = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    if attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return out.transpose(1, 2).reshape(b, n, d)


def block_forward(block, x, attn_mask=None):
    """``block(x)`` for batch-first (B, L, D) tokens; plain blocks use :func:`attention`.

    Submodules (``ln_1``, ``ln_2``, ``mlp``, ``attn.out_proj``) are called as modules, so forward hooks on
    them still fire; a hook on the block itself or on ``attn`` does not (callers capture block outputs).
    """
    if not is_plain_block(block):
        return block(x, attn_mask=attn_mask)
    y = attention(block.attn, block.ln_1(x), attn_mask)
    x = x + block.ls_1(block.attn.out_proj(y))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
