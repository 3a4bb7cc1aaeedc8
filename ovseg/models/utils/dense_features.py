"""The one structure every ovseg backbone returns."""
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch


@dataclass
class DenseFeatures:
    """Dense CLIP features of a batch of images.

    Attributes:
        dense (Tensor): (B, C, h, w) features in the joint image-text space (not L2-normalised).
        tokens (dict[str, Tensor]): hooked intermediates, each (B, D, h, w) (class token dropped).
        global_feat (Tensor, optional): (B, C) image embedding in the joint space, when requested.
        cls_tokens (dict[str, Tensor]): class token of each hooked intermediate, (B, D), ViT only.
        objectness (Tensor, optional): (B, 1, h, w) probability that a location is a foreground object,
            set by refiners with a background head (CLIP-DINOiser); read by the background rule.
    """

    dense: torch.Tensor
    tokens: Dict[str, torch.Tensor] = field(default_factory=dict)
    global_feat: Optional[torch.Tensor] = None
    cls_tokens: Dict[str, torch.Tensor] = field(default_factory=dict)
    objectness: Optional[torch.Tensor] = None

    @property
    def grid_size(self):
        """(h, w) of the dense map."""
        return tuple(self.dense.shape[-2:])

    def map(self, fn):
        """Return a new DenseFeatures with ``fn`` applied to every tensor (e.g. ``lambda t: t[idx]``)."""
        return DenseFeatures(
            dense=fn(self.dense),
            tokens={k: fn(v) for k, v in self.tokens.items()},
            global_feat=None if self.global_feat is None else fn(self.global_feat),
            cls_tokens={k: fn(v) for k, v in self.cls_tokens.items()},
            objectness=None if self.objectness is None else fn(self.objectness))
