"""MAFT+'s content-dependent transfer: every text embedding attends to the image's dense CLIP embedding."""
from dataclasses import dataclass

import torch
import torch.nn as nn

from ovseg.models.fcclip.position_encoding import sine_position_encoding
from ovseg.registry import MODELS


@dataclass
class CDTOutput:
    """Intermediates of :class:`ContentDependentTransfer`, batch-first.

    Attributes:
        pos (Tensor): (B, hw, E) sine positional encoding of the image tokens (added to the keys).
        attn (Tensor): (B, S, E) attention output of each text row.
        mlp (Tensor): (B, S, E) its linear projection.
        text (Tensor): (B, S, E) the transferred text embeddings.
    """

    pos: torch.Tensor
    attn: torch.Tensor
    mlp: torch.Tensor
    text: torch.Tensor


@MODELS.register_module()
class ContentDependentTransfer(nn.Module):
    """Text rows (queries, no positional encoding) attend to the image tokens (keys = tokens + sine PE,
    values = tokens); a linear layer and a LayerNorm turn the result into a residual update.

    ``residual`` is fixed by the released configs: 'semantic' (``configs/semantic``) gives
    ``t' = LayerNorm(t + Linear(attn))``, 'panoptic' (``configs/panoptic``, whose training zero-initialises
    the Linear) gives ``t' = t + LayerNorm(Linear(attn))``. The output is not re-normalised.

    Args:
        embed_dim (int): text / image embedding width (MAFT+'s ``cdt_params[0]``, 768 for ConvNeXt-L).
        num_heads (int): attention heads (``cdt_params[1]``). Default 8.
        residual (str): 'semantic' (default) or 'panoptic'.
    """

    RESIDUALS = ('semantic', 'panoptic')

    def __init__(self, embed_dim=768, num_heads=8, residual='semantic'):
        super().__init__()
        if residual not in self.RESIDUALS:
            raise ValueError(f'residual must be one of {self.RESIDUALS}, got {residual!r}')
        self.residual = residual
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.mlp = nn.Linear(embed_dim, embed_dim)
        for p in self.attn.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if residual == 'panoptic':
            nn.init.zeros_(self.mlp.weight)
            nn.init.zeros_(self.mlp.bias)

    def forward(self, image, text):
        """Transfer ``text`` (S, E) to the content of ``image`` (B, E, h, w) -> :class:`CDTOutput`."""
        pos = sine_position_encoding(image, image.shape[1] // 2).to(image.dtype).flatten(2).transpose(1, 2)
        tokens = image.flatten(2).transpose(1, 2)
        queries = text.to(tokens.dtype)[None].expand(image.shape[0], -1, -1)
        attn = self.attn(queries, tokens + pos, tokens, need_weights=False)[0]
        mlp = self.mlp(attn)
        out = self.norm(queries + mlp) if self.residual == 'semantic' else queries + self.norm(mlp)
        return CDTOutput(pos, attn, mlp, out)
