"""Mask pooling and text classification shared by FC-CLIP's in- and out-of-vocabulary classifiers."""
import torch
import torch.nn.functional as F

from ovseg.models.text_encoders import ClassEmbeddings, max_over_synonyms
from ovseg.models.utils.precision import float32_region, upcast


def mask_pool(features, mask_logits):
    """Average features over the pixels of each predicted mask (logit > 0).

    Masks are binarised without gradient; an empty mask pools to zeros.

    Args:
        features (Tensor): (B, C, H, W).
        mask_logits (Tensor): (B, Q, h, w) mask logits; resized bilinearly to (H, W) when they differ.

    Returns:
        Tensor: (B, Q, C).
    """
    if mask_logits.shape[-2:] != features.shape[-2:]:
        mask_logits = F.interpolate(mask_logits, size=features.shape[-2:], mode='bilinear',
                                    align_corners=False)
    with torch.no_grad():
        mask = (mask_logits.detach() > 0).to(features.dtype)
        mask = mask / (mask.sum(dim=(-1, -2), keepdim=True) + 1e-8)
    return torch.einsum('bchw,bqhw->bqc', features, mask)


def with_void(class_embeddings, void_embedding):
    """Append a void row to a vocabulary's embeddings (L2-normalised), as the last class.

    Args:
        class_embeddings (ClassEmbeddings): K classes, S synonym rows.
        void_embedding (Tensor): (1, C) learnable void embedding.

    Returns:
        ClassEmbeddings: S + 1 rows, K + 1 classes (void = class K, named 'void').
    """
    emb = torch.cat([class_embeddings.embeddings, F.normalize(void_embedding, dim=-1).to(
        class_embeddings.embeddings.dtype)], 0)
    s2c = torch.cat([class_embeddings.synonym_to_class, class_embeddings.synonym_to_class.new_tensor(
        [class_embeddings.num_classes])])
    names = list(class_embeddings.names) + ['void']
    return ClassEmbeddings(emb, s2c, class_embeddings.num_classes + 1, names)


def classification_logits(x, class_embeddings, logit_scale):
    """Scaled cosine similarity to every synonym, then the maximum over each class's synonyms.

    Never in reduced precision: half-precision inputs are cast to float32 and autocast is off, so
    bf16 / fp16 inference keeps the final similarity in float32 (float32 inputs: unchanged).

    Args:
        x (Tensor): (B, Q, C) embeddings (any norm, any floating dtype).
        class_embeddings (ClassEmbeddings): S rows for K classes (void included if wanted), (S, C) shared
            by the batch or (B, S, C) per image (MAFT+'s content-dependent text embeddings); used as given
            (normalised text rows in FC-CLIP).
        logit_scale (Tensor): log of the scale; ``exp`` is clamped at 100 (CLIP's rule).

    Returns:
        Tensor: (B, Q, K) logits (float32 for half-precision inputs).
    """
    with float32_region(x):
        x = upcast(x)
        scale = torch.clamp(upcast(logit_scale).exp(), max=100)
        logits = scale * F.normalize(x, dim=-1) @ class_embeddings.embeddings.to(x.dtype).transpose(-1, -2)
        logits = max_over_synonyms(logits.transpose(1, 2), class_embeddings.synonym_to_class,
                                   class_embeddings.num_classes)
    return logits.transpose(1, 2)
