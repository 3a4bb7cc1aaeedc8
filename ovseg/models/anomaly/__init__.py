"""Zero- and few-shot anomaly localisation: the anomaly segmentors and the methods' building blocks (state
prompts, WinCLIP windows, MuSc mutual scoring, AnoVL, AnomalyCLIP and AdaptCLIP parts).

The heads themselves (``WinCLIPHead``, ``WinCLIPFewShotHead``, ``AnoVLHead``, ``MuScHead``,
``AnomalyCLIPHead``, ``AdaptCLIPHead``) are in :mod:`ovseg.models.decode_heads`.
"""
from .anomaly_segmentor import ZeroShotAnomalySegmentor, pack_anomaly_results
from .fewshot_segmentor import FewShotAnomalySegmentor
from .musc import (check_num_images, lnamd, lnamd_layers, memory_bound_bytes, min_images, musc_scores,
                   mutual_scores, rscin, scored_features, vit_block_tokens)
from .prompts import AnomalyStatePrompts
from . import adaptclip, anomalyclip, anovl, anovl_adapter  # noqa: F401,E402  registers their modules
from .winclip import (anomaly_probability, encode_class_token, harmonic_aggregation, patch_embeddings,
                      tokens_with_position, window_embeddings, window_masks)
from .nearest_reference import nearest_reference

__all__ = ['AnomalyStatePrompts', 'FewShotAnomalySegmentor', 'anomaly_probability', 'check_num_images',
           'encode_class_token', 'harmonic_aggregation', 'lnamd', 'lnamd_layers', 'memory_bound_bytes',
           'min_images', 'musc_scores', 'mutual_scores', 'nearest_reference', 'patch_embeddings', 'rscin',
           'scored_features', 'tokens_with_position', 'vit_block_tokens', 'window_embeddings', 'window_masks',
           'ZeroShotAnomalySegmentor', 'pack_anomaly_results']
