"""FC-CLIP's out-of-vocabulary classifier: mask pooling of the frozen dense CLIP map through the CLIP head."""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.fcclip.classification import classification_logits, mask_pool
from ovseg.registry import MODELS


@dataclass
class OutVocabOutput:
    """Intermediates of :class:`FCCLIPOutVocabClassifier`.

    Attributes:
        mask_for_pooling (Tensor): (B, Q, h, w) mask logits resized to the dense CLIP map.
        pooled_raw (Tensor): (B, Q, D) mask-pooled stage-4 features.
        pooled_embed (Tensor): (B, Q, E) the same through the CLIP head (joint space).
        logits (Tensor): (B, Q, K + 1) CLIP-scaled logits (void column last, as for the in-vocab branch).
    """

    mask_for_pooling: torch.Tensor
    pooled_raw: torch.Tensor
    pooled_embed: torch.Tensor
    logits: torch.Tensor


@MODELS.register_module()
class FCCLIPOutVocabClassifier(nn.Module):
    """Classify predicted masks with the frozen CLIP: pool ``clip_vis_dense`` inside each mask (logit > 0),
    project through the CLIP head (``backbone.project_pooled``), score with CLIP's own logit scale.

    No parameters: everything it uses belongs to the frozen backbone.
    """

    def forward(self, backbone, clip_dense, mask_logits, class_embeddings):
        """Args:
            backbone (OpenCLIPBackbone): ConvNeXt CLIP (``project_pooled`` and ``clip.logit_scale``).
            clip_dense (Tensor): (B, D, h, w) ``tokens['clip_vis_dense']``.
            mask_logits (Tensor): (B, Q, H, W) mask logits (any resolution).
            class_embeddings (ClassEmbeddings): text rows with the void row last.

        Returns:
            OutVocabOutput: logits and intermediates.
        """
        resized = F.interpolate(mask_logits, size=clip_dense.shape[-2:], mode='bilinear', align_corners=False)
        pooled = mask_pool(clip_dense, resized)
        b, q, d = pooled.shape
        embed = backbone.project_pooled(pooled.reshape(b * q, d)).view(b, q, -1)
        logits = classification_logits(embed, class_embeddings, backbone.clip.logit_scale)
        return OutVocabOutput(resized, pooled, embed, logits)
