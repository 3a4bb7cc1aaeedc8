"""open_clip text encoding with every batch trimmed to its longest tokenised prompt.

The text tower is causal and pools at the end-of-text token, so positions after the longest prompt's EOT
never influence the result: cutting the context to that length gives the same embeddings (up to float
summation order) for a fraction of the work. Towers that are not causal + argmax-pooled fall back to
open_clip's own ``encode_text``.
"""
import torch

from ovseg.models.backbones.attention_block import block_forward


def _text_module(clip):
    return clip.text if hasattr(clip, 'text') and hasattr(clip.text, 'token_embedding') else clip


def supports_trimming(clip):
    """True when the text tower is causal with argmax (EOT) pooling and no class embedding."""
    t = _text_module(clip)
    pool = getattr(t, 'text_pool_type', getattr(t, 'pool_type', 'argmax'))
    return (pool == 'argmax' and getattr(t, 'attn_mask', None) is not None
            and getattr(t, 'cls_emb', None) is None and hasattr(t, 'token_embedding'))


def encode_text_trimmed(clip, tokens):
    """Encode (N, L) token ids -> (N, E) unnormalised text embeddings.

    Args:
        clip (nn.Module): open_clip CLIP / CustomTextCLIP model.
        tokens (Tensor): (N, L) int64 token ids, zero-padded after the EOT token.
    """
    if not supports_trimming(clip):
        return clip.encode_text(tokens)
    t = _text_module(clip)
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    x = t.token_embedding(tokens[:, :length]) + t.positional_embedding[:length].to(t.token_embedding.weight.dtype)
    mask = t.attn_mask[:length, :length]
    if getattr(t.transformer, 'batch_first', False):
        for block in t.transformer.resblocks:
            x = block_forward(block, x, attn_mask=mask)
    else:
        x = t.transformer(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    x = t.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    proj = t.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Module) else x @ proj
