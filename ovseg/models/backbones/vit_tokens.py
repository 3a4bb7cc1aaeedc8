"""Token-level entry points of the ViT walker for heads that need more than dense features.

WinCLIP runs the tower on token subsets (class token + a window of patches), MuSc reads block outputs,
analysis tools time the tower as trained; all through :func:`.vit_walker.walk`.
"""
from ovseg.models.backbones.vit_towers import vit_tower
from ovseg.models.backbones.vit_walker import walk


def tokens_with_position(visual, images, pos_mode=None):
    """Patch embedding + prefix tokens + positional embedding (before the tower's pre-norm).

    Args:
        visual: a ViT tower (:mod:`.vit_towers`).
        images (Tensor): (B, 3, H, W) normalised (sides floored to the patch size; other grids than the
            native one get a resized positional embedding, bicubic for open_clip).
        pos_mode (str, optional): positional-embedding resize (:mod:`.pos_embed`). Default the tower's.

    Returns:
        tuple[Tensor, tuple[int, int]]: (B, P + h * w, D) tokens and the grid (h, w).
    """
    tokens, grid, _ = vit_tower(visual).embed(images, pos_mode)
    return tokens, grid


def encode_class_token(visual, tokens):
    """(N, L, D) tokens after the positional embedding -> (N, C) projected class-token embeddings.

    The tokens (any subset, e.g. the class token and one window's patches) go through the pre-norm and
    every block as trained, then the class token through the tower head.
    """
    tower = vit_tower(visual)
    x = walk(tower, tokens=tokens).tokens
    return tower.head_tokens(x[:, :1])[:, 0]


def block_outputs(visual, images, block_indices):
    """Outputs of chosen blocks and the pooled embedding of the tower as trained.

    Args:
        visual: a ViT tower.
        images (Tensor): (B, 3, H, W) normalised images.
        block_indices (Sequence[int]): 0-based block indices (negative from the end).

    Returns:
        tuple: list of (B, P + h * w, D) block outputs (prefix tokens first) in the order asked, the
        (B, C) pooled embedding (not normalised) and the grid (h, w).
    """
    tower = vit_tower(visual)
    names = [f'blocks.{i}' for i in block_indices]
    result = walk(tower, images, taps=names)
    return [result.taps[n] for n in names], tower.pool(result.tokens), result.grid


def project_tokens(visual, tokens, with_ln_post=True):
    """``ln_post`` (optional) and the visual ``proj`` on every token: (B, N, D) -> (B, N, C)."""
    if with_ln_post:
        return vit_tower(visual).head_tokens(tokens)
    return tokens @ visual.proj if visual.proj is not None else tokens
