"""CLIP-DINOiser: correlation pooling of MaskCLIP features and a background (objectness) head."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.utils.dense_features import DenseFeatures
from ovseg.registry import MODELS


def correlation_pool(dense, corr, eps=1e-6):
    """Weighted average of features by correlations.

    Args:
        dense (Tensor): (B, C, h, w) features to pool.
        corr (Tensor): (B, hw, hw) non-negative weights, ``corr[b, q, p]`` = weight of location p for q.
        eps (float): added to the weight sum (1e-6 as in the original).

    Returns:
        Tensor: (B, C, h, w) with ``out[:, :, q] = Σ_p corr[q, p] f[:, p] / (Σ_p corr[q, p] + eps)``.
    """
    b, c, h, w = dense.shape
    flat = dense.flatten(2)
    pooled = torch.bmm(flat, corr.transpose(1, 2)) / (corr.sum(dim=-1)[:, None, :] + eps)
    return pooled.view(b, c, h, w)


@MODELS.register_module()
class CLIPDINOiserRefiner(nn.Module):
    """Refine MaskCLIP features with CLIP-DINOiser's two light convolutions.

    ``obj_proj`` (3x3 conv, replicate padding) maps the intermediate ViT tokens to a space whose cosine
    correlations (zeroed below ``gamma``) pool the MaskCLIP features; ``bkg_decoder`` (1x1 conv on the
    L2-normalised tokens) predicts objectness, which the segmentor's background rule reads.

    Args:
        in_channels (int): width of the hooked tokens (768 for ViT-B/16).
        proj_channels (int): width of ``obj_proj`` (256).
        token_layer (str): backbone token layer to read (``resblocks[-3].ln_2`` output by default).
        gamma (float): correlation threshold γ (0.2).
        with_background (bool): predict objectness with ``bkg_decoder``. Default True.
    """

    def __init__(self, in_channels=768, proj_channels=256, token_layer='resblocks.-3.ln_2', gamma=0.2,
                 with_background=True):
        super().__init__()
        self.obj_proj = nn.Conv2d(in_channels, proj_channels, 3, padding=1, padding_mode='replicate')
        self.bkg_decoder = nn.Conv2d(in_channels, 1, 1) if with_background else None
        self.token_layer = token_layer
        self.gamma = float(gamma)

    @property
    def token_layers(self):
        """Backbone token layers this refiner reads."""
        return (self.token_layer,)

    def correlations(self, tokens):
        """(B, D, h, w) tokens -> (B, hw, hw) cosine correlations of the projected tokens."""
        proj = F.normalize(self.obj_proj(tokens), dim=1).flatten(2)
        return torch.bmm(proj.transpose(1, 2), proj)

    def objectness_logits(self, tokens):
        """(B, D, h, w) tokens -> (B, 1, h, w) background-head logits (sigmoid = objectness)."""
        return self.bkg_decoder(F.normalize(tokens, dim=1))

    def forward(self, feats):
        """DenseFeatures -> DenseFeatures with pooled ``dense`` and ``objectness`` set."""
        if self.token_layer not in feats.tokens:
            raise KeyError(f'CLIP-DINOiser needs backbone tokens {self.token_layer!r}; the backbone gave '
                           f'{sorted(feats.tokens)}. Add it to the backbone token_layers.')
        tokens = feats.tokens[self.token_layer]
        corr = self.correlations(tokens.float())
        corr = corr.masked_fill(corr < self.gamma, 0.0)
        pooled = correlation_pool(feats.dense.float(), corr)
        objectness = None
        if self.bkg_decoder is not None:
            objectness = self.objectness_logits(tokens.float()).sigmoid()
        return DenseFeatures(dense=pooled, tokens=feats.tokens, global_feat=feats.global_feat,
                             cls_tokens=feats.cls_tokens, objectness=objectness)
