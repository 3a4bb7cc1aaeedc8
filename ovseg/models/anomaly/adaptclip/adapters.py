"""AdaptCLIP's three learned adapters (gaobb/AdaptCLIP ``adaptcliplib/adaptclip.py``).

- :class:`ResMLP` and :class:`VisualAdapter`: ``x + W2 ReLU(BN(W1 x))`` (no Linear bias, BatchNorm1d over
  every token of the batch), one for the image feature (``global_adapter``) and one for the tokens of the
  last tapped layer (``local_adapter``; the original spells it ``local_adater``, the converter renames it).
- :class:`TextualAdapter`: learnable [normal, anomalous] contexts before "." (no class word, no deep
  prompts): AnomalyCLIP's prompt learner with the sentence ``"X X ... X."``.
- :class:`PromptQueryAdapter`: per tapped layer a BatchNorm2d (``sharebn``) of the query/reference fusion
  map, then **one** local head (conv 3x3 -> BN -> ReLU -> 2x up-conv -> conv 3x3 -> BN -> ReLU -> 2x up-conv
  -> conv 1x1 to 2 channels) and **one** global MLP (768 -> 128 -> 64 -> 2 with BN and ReLU) shared by all
  layers: the original holds ``ModuleList([module] * layers)``, the same module four times.
"""
import torch
import torch.nn as nn

from ovseg.models.anomaly.anomalyclip.prompt_learner import AnomalyCLIPPromptLearner


class ResMLP(nn.Module):
    """Residual bottleneck MLP on (N, C) or (B, L, C) features (BatchNorm1d over all rows)."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False),
                                nn.BatchNorm1d(channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False))

    def forward(self, x):
        return x + self.fc(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class VisualAdapter(nn.Module):
    """Global (image feature) and local (last-layer tokens) :class:`ResMLP` adapters."""

    def __init__(self, channels=768, reduction=4):
        super().__init__()
        self.local_adapter = ResMLP(channels, reduction)
        self.global_adapter = ResMLP(channels, reduction)

    def forward(self, image_features, tokens):
        """(B, C) image features, (B, N, C) tokens -> adapted (B, C), (B, N, C)."""
        return self.global_adapter(image_features), self.local_adapter(tokens)


class TextualAdapter(AnomalyCLIPPromptLearner):
    """Learned [normal, anomalous] prompts ``[SOT, ctx_pos | ctx_neg (n_ctx), '.', EOT, ...]``.

    State dict: ``ctx_pos`` and ``ctx_neg`` (1, 1, n_ctx, D); the fixed token embeddings are looked up from
    the frozen CLIP at every call (the original stores them as buffers, dropped by the converter).
    """

    def __init__(self, text_width, n_ctx=12, init_std=0.02):
        super().__init__(text_width, n_ctx=n_ctx, text_depth=1, text_n_ctx=min(1, n_ctx), init_std=init_std)
        self.texts = (' '.join(['X'] * self.n_ctx) + '.',) * 2


class PromptQueryAdapter(nn.Module):
    """Scores fusion maps of query and aligned reference tokens, per tapped layer.

    Args:
        channels (int): token width (768 for ViT-L/14).
        mid_channels (int): width of the first hidden layer. Default 128.
        num_layers (int): tapped layers (one ``sharebn`` each). Default 4.
    """

    def __init__(self, channels=768, mid_channels=128, num_layers=4):
        super().__init__()
        mid, half = mid_channels, mid_channels // 2
        self.sharebn = nn.ModuleList([nn.BatchNorm2d(channels) for _ in range(num_layers)])
        self.local_adapter = nn.Sequential(
            nn.Conv2d(channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(mid, mid, 2, stride=2),
            nn.Conv2d(mid, half, 3, padding=1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(half, half, 2, stride=2),
            nn.Conv2d(half, 2, 1))
        self.global_adapter = nn.Sequential(
            nn.Linear(channels, mid, bias=False), nn.BatchNorm1d(mid), nn.ReLU(inplace=True),
            nn.Linear(mid, half, bias=False), nn.BatchNorm1d(half), nn.ReLU(inplace=True),
            nn.Linear(half, 2, bias=False))

    def forward(self, fusion, layer, topk=10):
        """One layer's (B, C, h, w) fusion map -> (B, 2, 4h, 4w) local logits, (B, 2) image logits, and the
        normalised map (B, C, h, w); the image feature is (spatial mean + mean of the top-``topk``) / 2."""
        fusion = self.sharebn[layer](fusion)
        flat = fusion.flatten(2)
        image = (flat.mean(dim=-1) + flat.topk(min(topk, flat.shape[-1]), dim=-1).values.mean(dim=-1)) / 2
        return self.local_adapter(fusion), self.global_adapter(image), fusion


def pq_fusion(query, aligned, context=True):
    """AdaptCLIP's fusion of normalised query tokens and their nearest reference tokens:
    ``q + |q - p|`` with context, ``|q - p|`` without."""
    residual = torch.abs(query - aligned)
    return query + residual if context else residual
