"""Building blocks of the masked-attention transformer decoder (batch-first, post- or pre-norm)."""
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.utils.precision import active_autocast_dtype


def _with_pos(x, pos):
    return x if pos is None else x + pos


class AttentionLayer(nn.Module):
    """Multi-head attention with a residual and a LayerNorm (self- or cross-attention).

    Query and key get their positional embeddings added; the value does not.

    Args:
        embed_dim (int): channels.
        num_heads (int): heads.
        dropout (float): attention and residual dropout. Default 0.
        pre_norm (bool): LayerNorm before attention instead of after the residual. Default False.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, pre_norm=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x, memory=None, attn_mask=None, pos=None, query_pos=None):
        """Attend from ``x`` (B, Q, C) to ``memory`` (B, S, C), or to itself when ``memory`` is None.

        Args:
            attn_mask (Tensor, optional): (B·heads, Q, S) bool, True = not allowed to attend.
            pos (Tensor, optional): (B, S, C) positional embedding of the memory.
            query_pos (Tensor, optional): (B, Q, C) positional embedding of the queries.
        """
        q = self.norm(x) if self.pre_norm else x
        if memory is None:
            key, value, pos = q, q, query_pos
        else:
            key, value = memory, memory
        query, key = _with_pos(q, query_pos), _with_pos(key, pos)
        dtype = active_autocast_dtype(x)
        if dtype is not None and attn_mask is not None:
            # torch < 2.2 turns a bool mask into one of the inputs' dtype and gives it to SDPA beside
            # autocast's half-precision queries, which it refuses: cast the inputs as autocast would
            query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
        out = self.attn(query, key, value, attn_mask=attn_mask, need_weights=False)[0]
        x = x + self.dropout(out)
        return x if self.pre_norm else self.norm(x)


class FFNLayer(nn.Module):
    """Two-layer ReLU FFN with a residual and a LayerNorm (post- or pre-norm)."""

    def __init__(self, embed_dim, ffn_dim=2048, dropout=0.0, pre_norm=False):
        super().__init__()
        self.linear1 = nn.Linear(embed_dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x):
        """(B, Q, C) -> (B, Q, C)."""
        y = self.norm(x) if self.pre_norm else x
        y = self.linear2(self.dropout(F.relu(self.linear1(y))))
        x = x + self.dropout(y)
        return x if self.pre_norm else self.norm(x)


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (DETR's prediction MLP)."""

    def __init__(self, in_dim, hidden_dim, out_dim, num_layers):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
