"""Heads: what turns a backbone's features (and the text) into scores.

``OVSimilarityHead`` (dense image-text similarity of the open-vocabulary segmentors) and the anomaly heads
(WinCLIP, WinCLIP+, AnoVL, MuSc, AnomalyCLIP, AdaptCLIP); their method building blocks (prompt ensembles,
adapters, value-value attention, window helpers, mutual scoring) live in :mod:`ovseg.models.anomaly`.
"""
from .adaptclip_head import AdaptCLIPHead
from .anomalyclip_head import AnomalyCLIPHead
from .anovl_head import AnoVLHead
from .musc_head import MuScHead
from .similarity_head import OVSimilarityHead
from .winclip_fewshot_head import WinCLIPFewShotHead
from .winclip_head import WinCLIPHead

__all__ = ['AdaptCLIPHead', 'AnoVLHead', 'AnomalyCLIPHead', 'MuScHead', 'OVSimilarityHead', 'WinCLIPFewShotHead',
           'WinCLIPHead']
