"""Zero- and few-shot anomaly localisation: state prompts, WinCLIP(+), MuSc and the anomaly segmentors."""
from .anomaly_segmentor import ZeroShotAnomalySegmentor, pack_anomaly_results
from .fewshot_segmentor import FewShotAnomalySegmentor
from .musc import (MuScHead, check_num_images, lnamd, lnamd_layers, memory_bound_bytes, min_images,
                   musc_scores,
                   mutual_scores, rscin, scored_features, vit_block_tokens)
from .prompts import AnomalyStatePrompts
from . import adaptclip, anomalyclip, anovl  # noqa: F401,E402  registers AdaptCLIP, AnoVL, AnomalyCLIP
from .winclip import (WinCLIPHead, anomaly_probability, encode_class_token, harmonic_aggregation,
                      tokens_with_position, window_embeddings, window_masks)
from .nearest_reference import nearest_reference
from .winclip_fewshot import WinCLIPFewShotHead, patch_embeddings

__all__ = ['AnomalyStatePrompts', 'FewShotAnomalySegmentor', 'MuScHead', 'WinCLIPFewShotHead', 'WinCLIPHead',
           'anomaly_probability', 'check_num_images', 'encode_class_token', 'harmonic_aggregation', 'lnamd',
           'lnamd_layers', 'memory_bound_bytes', 'min_images', 'musc_scores', 'mutual_scores', 'nearest_reference',
           'patch_embeddings', 'rscin', 'scored_features', 'tokens_with_position', 'vit_block_tokens',
           'window_embeddings', 'window_masks', 'ZeroShotAnomalySegmentor', 'pack_anomaly_results']
