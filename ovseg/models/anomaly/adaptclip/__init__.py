"""AdaptCLIP (Gao et al., AAAI 2026): visual, textual and prompt-query adapters, zero- and few-shot.

Importing this package registers ``AdaptCLIPSegmentor`` into mmseg's MODELS; the head is
:class:`ovseg.models.decode_heads.AdaptCLIPHead`.
"""
from .adapters import PromptQueryAdapter, ResMLP, TextualAdapter, VisualAdapter, pq_fusion
from .means import arithmetic_mean, harmonic_mean
from .segmentor import AdaptCLIPSegmentor

__all__ = ['AdaptCLIPSegmentor', 'PromptQueryAdapter', 'ResMLP', 'TextualAdapter',
           'VisualAdapter', 'arithmetic_mean', 'harmonic_mean', 'pq_fusion']
