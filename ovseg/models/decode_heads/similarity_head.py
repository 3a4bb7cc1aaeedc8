"""Open-vocabulary classification of dense features by cosine similarity with class text embeddings."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.text_encoders.text_classifier import max_over_synonyms
from ovseg.registry import MODELS


@MODELS.register_module()
class OVSimilarityHead(nn.Module):
    """``logit_scale * cos(dense feature, class embedding)``, maximum over each class's synonyms.

    Args:
        logit_scale (float): fixed multiplier of the cosine (100 in MaskCLIP / CLIP-DINOiser). Default 100.
    """

    def __init__(self, logit_scale=100.0):
        super().__init__()
        self.logit_scale = float(logit_scale)

    def forward(self, dense, class_embeddings):
        """(B, C, h, w) features -> (B, K, h, w) scaled cosine logits (computed in float32)."""
        feats = F.normalize(dense.float(), dim=1)
        emb = class_embeddings.embeddings.to(feats.device, torch.float32)
        logits = torch.einsum('bchw,sc->bshw', feats, emb) * self.logit_scale
        return max_over_synonyms(logits, class_embeddings.synonym_to_class.to(feats.device),
                                 class_embeddings.num_classes)
