"""CLIP text tower with AnomalyCLIP's deep (per-block) learnable tokens.

Before text block i (0-based, 1 <= i <= number of deep sets) the tokens at positions 1..n are
**replaced** by deep set i - 1; block 0 and the blocks after the last set run unchanged. The reference
casts each set to float16 before concatenating it with the float32 sequence (``.half()``; ``torch.cat``
promotes it back), so the values used are rounded to float16 (up to ~4e-5 apart from the parameter) and
so is each prompt's gradient on the way back (relative ~5e-4); ``fp16_deep_prompts=True`` keeps both.
"""
import torch


def text_tower(clip):
    """The module holding the text tower (``CLIP`` itself, or ``CustomTextCLIP.text``)."""
    return clip.text if hasattr(clip, 'text') and hasattr(clip.text, 'token_embedding') else clip


def encode_learned_prompts(clip, prompts, tokens, deep_prompts=(), fp16_deep_prompts=True, record=None):
    """Text features of prompt embeddings.

    Args:
        clip (nn.Module): open_clip CLIP (causal text tower with argmax pooling).
        prompts (Tensor): (P, L, D) prompt embeddings (before the positional embedding).
        tokens (Tensor): (P, L) token ids; the end-of-text position is their argmax.
        deep_prompts (Sequence[Tensor]): (n, D) deep sets for blocks 1, 2, ...
        fp16_deep_prompts (bool): round the deep sets to float16 as the reference does. Default True.
        record (list, optional): receives each block's output (P, L, D).

    Returns:
        Tensor: (P, C) unnormalised text features.
    """
    t = text_tower(clip)
    blocks = t.transformer.resblocks
    if len(deep_prompts) >= len(blocks):
        raise ValueError(f'{len(deep_prompts)} deep prompt sets need more than {len(deep_prompts)} text blocks; '
                         f'the tower has {len(blocks)}')
    batch_first = getattr(t.transformer, 'batch_first', True)
    x = prompts + t.positional_embedding[:prompts.shape[1]].to(prompts.dtype)
    mask = t.attn_mask[:x.shape[1], :x.shape[1]] if t.attn_mask is not None else None
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep_prompts):
            # Expand first, then round: the reference's backward rounds each prompt's gradient to
            # float16 before the expand sums them (its cast sits after the expand).
            ctx = deep_prompts[i - 1].expand(x.shape[0], -1, -1)
            ctx = ctx.half().to(x.dtype) if fp16_deep_prompts else ctx.to(x.dtype)
            x = torch.cat([x[:, :1], ctx, x[:, 1 + ctx.shape[1]:]], dim=1)
        if batch_first:
            x = block(x, attn_mask=mask)
        else:
            x = block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        if record is not None:
            record.append(x)
    x = t.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    proj = t.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Module) else x @ proj
