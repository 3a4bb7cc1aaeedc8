"""AnomalyCLIP (Zhou et al., ICLR 2024): object-agnostic learned prompts, DPAM, multi-layer maps.

Importing this package registers ``AnomalyCLIPSegmentor`` into mmseg's MODELS; the head is
:class:`ovseg.models.decode_heads.AnomalyCLIPHead`.
"""
from .losses import anomalyclip_losses, binary_dice_loss, probability_focal_loss
from .prompt_learner import AnomalyCLIPPromptLearner
from .segmentor import AnomalyCLIPSegmentor
from .smoothing import gaussian_filter2d, gaussian_kernel1d
from .text_encoder import encode_learned_prompts

__all__ = ['AnomalyCLIPPromptLearner', 'AnomalyCLIPSegmentor', 'anomalyclip_losses',
           'binary_dice_loss', 'encode_learned_prompts', 'gaussian_filter2d', 'gaussian_kernel1d',
           'probability_focal_loss']
