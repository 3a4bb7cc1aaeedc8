"""FC-CLIP's in-vocabulary classifier: mask-pooled pixel features added to the query, MLP to text space."""
import math

import torch
import torch.nn as nn

from ovseg.models.fcclip.classification import classification_logits, mask_pool
from ovseg.models.fcclip.transformer_layers import MLP
from ovseg.registry import MODELS


@MODELS.register_module()
class FCCLIPInVocabClassifier(nn.Module):
    """Classify decoder queries against text embeddings (the "in-vocabulary" branch of FC-CLIP).

    ``logits = clamp(exp(logit_scale), 100) · cos(class_embed(pool_proj(maskpool(F, M)) + q), T)``, with
    F the pixel decoder's mask features, M a query's mask logits, q its normalised decoder output and T
    the text embeddings (void row last); the maximum is taken over each class's synonyms.

    Args:
        hidden_dim (int): query channels (= mask-feature channels). Default 256.
        text_dim (int): joint image-text space width (768 for ConvNeXt-L CLIP). Default 768.
        num_layers (int): layers of the MLP to text space. Default 3.
        logit_scale_init (float): initial log scale. Default log(1 / 0.07).
    """

    timed_as_stage = True  # StageTimer: a stage of its own inside the transformer decoder

    def __init__(self, hidden_dim=256, text_dim=768, num_layers=3, logit_scale_init=math.log(1 / 0.07)):
        super().__init__()
        self.pool_proj = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))
        self.class_embed = MLP(hidden_dim, hidden_dim, text_dim, num_layers)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    def forward(self, queries, mask_features, mask_logits, class_embeddings):
        """Class logits of every query.

        Args:
            queries (Tensor): (B, Q, C) normalised decoder outputs.
            mask_features (Tensor): (B, C, H, W).
            mask_logits (Tensor): (B, Q, H, W) the queries' mask logits.
            class_embeddings (ClassEmbeddings): text rows, void included as the last class.

        Returns:
            Tensor: (B, Q, K + 1) logits.
        """
        pooled = self.pool_proj(mask_pool(mask_features, mask_logits))
        return classification_logits(self.class_embed(pooled + queries), class_embeddings, self.logit_scale)
