"""Inference API: ``OVSegInferencer(cfg)(images, vocabulary)`` -> masks, probabilities, overlays."""
from .inferencer import (CheckpointMismatchError, OVSegInferencer, build_model,
                         inference_pipeline_cfg, is_open_clip_state_dict, load_config,
                         load_model_weights, resize_scores, set_text_templates,
                         strip_weight_sources)
from .visualization import blend_mask, class_palette, draw_legend, draw_overlay

__all__ = [
    'CheckpointMismatchError', 'OVSegInferencer', 'blend_mask', 'build_model', 'class_palette',
    'draw_legend', 'draw_overlay', 'inference_pipeline_cfg', 'is_open_clip_state_dict',
    'load_config', 'load_model_weights', 'resize_scores', 'set_text_templates',
    'strip_weight_sources',
]
