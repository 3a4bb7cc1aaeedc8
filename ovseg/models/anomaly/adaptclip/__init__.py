"""AdaptCLIP (Gao et al., AAAI 2026): visual, textual and prompt-query adapters, zero- and few-shot.

Importing this package registers ``AdaptCLIPHead`` and ``AdaptCLIPSegmentor`` into mmseg's MODELS.
"""
from .adapters import PromptQueryAdapter, ResMLP, TextualAdapter, VisualAdapter, pq_fusion
from .head import AdaptCLIPHead, arithmetic_mean, harmonic_mean
from .segmentor import AdaptCLIPSegmentor

__all__ = ['AdaptCLIPHead', 'AdaptCLIPSegmentor', 'PromptQueryAdapter', 'ResMLP', 'TextualAdapter',
           'VisualAdapter', 'arithmetic_mean', 'harmonic_mean', 'pq_fusion']
