"""SAM's mask decoder without per-prompt copies of the image: the same modules, the same arithmetic.

``MaskDecoder.predict_masks`` copies the image embedding and its positional encoding once per prompt
(``repeat_interleave``) before the two-way transformer. Until the first image-to-token attention updates
the image tokens, every prompt sees the same image tokens, so those copies, their sum with the positional
encoding and their key/value/query projections in the first block are identical across prompts. Here
the transformer runs on a batch-1 image that broadcasts against the B prompts: the first block projects
the image tokens once, and the image tokens become per-prompt tensors only where they start to differ.

The decoder is also split in two: :func:`decode_tokens` (transformer and IoU head) and
:func:`decode_masks` (upscaling and hypernetworks) for chosen prompts only, so that prompts whose masks
will all be rejected on their predicted IoU are never upscaled.

Every arithmetic operation and its operands per prompt are unchanged; on this machine's BLAS the outputs
are bit-identical to the stock decoder (tested); other back-ends may differ in the last bit. Only valid
when every prompt uses the same dense prompt embedding (no mask prompt, or one shared mask).
"""
from dataclasses import dataclass

import torch


@dataclass
class DecodedTokens:
    """Transformer outputs of B prompts.

    Attributes:
        hs (Tensor): (B, T, C) output tokens.
        keys (Tensor): (B, h * w, C) updated image tokens.
        iou (Tensor): (B, 1 + num_multimask) predicted IoU of every mask token.
        grid (tuple[int, int]): (h, w) of the image embedding.
    """

    hs: torch.Tensor
    keys: torch.Tensor
    iou: torch.Tensor
    grid: tuple


def decode_tokens(mask_decoder, image_embedding, image_pe, sparse, dense):
    """Transformer and IoU head of ``MaskDecoder.predict_masks`` for B prompts on one image.

    Args:
        mask_decoder (MaskDecoder): segment-anything's decoder (its modules are called unchanged).
        image_embedding (Tensor): (1, C, h, w).
        image_pe (Tensor): (1, C, h, w) dense positional encoding.
        sparse (Tensor): (B, T, C) sparse prompt embeddings.
        dense (Tensor): (1, C, h, w) dense prompt embedding shared by all prompts.

    Returns:
        DecodedTokens
    """
    if image_embedding.shape[0] != 1 or dense.shape[0] != 1:
        raise ValueError('decode_tokens needs one image embedding and one dense prompt embedding.')
    num = sparse.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(num, -1, -1), sparse), dim=1)
    # image + dense is the same for every prompt: computed once, broadcast by the transformer
    src = image_embedding + dense
    hs, keys = mask_decoder.transformer(src, image_pe, tokens)
    if keys.shape[0] != num:  # a transformer whose blocks never update the image tokens
        keys = keys.expand(num, -1, -1)
    iou = mask_decoder.iou_prediction_head(hs[:, 0, :])
    return DecodedTokens(hs=hs, keys=keys, iou=iou, grid=tuple(src.shape[-2:]))


def decode_masks(mask_decoder, decoded, rows=None):
    """Upscaling and hypernetwork product of ``MaskDecoder.predict_masks`` for the prompts ``rows``.

    The hypernetwork MLPs run on all B prompts before the selection: small matrix products may round
    differently with fewer rows, and the stock decoder runs them on the whole batch.

    Returns:
        Tensor: (B', 1 + num_multimask, 4h, 4w) logits of every mask token (B' = len(rows) or B).
    """
    mask_tokens = decoded.hs[:, 1:(1 + mask_decoder.num_mask_tokens), :]
    hyper_in = torch.stack([mlp(mask_tokens[:, i, :])
                            for i, mlp in enumerate(mask_decoder.output_hypernetworks_mlps)], dim=1)
    keys = decoded.keys
    if rows is not None:
        hyper_in, keys = hyper_in[rows], keys[rows]
    num, c = keys.shape[0], keys.shape[-1]
    h, w = decoded.grid
    upscaled = mask_decoder.output_upscaling(keys.transpose(1, 2).reshape(num, c, h, w))
    b, c, h, w = upscaled.shape
    return (hyper_in @ upscaled.view(b, c, h * w)).view(b, hyper_in.shape[1], h, w)


def output_slice(multimask_output):
    """Mask tokens returned by ``MaskDecoder.forward``: the three multimask ones, or the single one."""
    return slice(1, None) if multimask_output else slice(0, 1)
