"""Inference APIs: ``OVSegInferencer(cfg)(images, vocabulary)`` -> masks, probabilities, overlays;
``AnomalyInferencer(cfg)(images, class_name, references=None)`` -> anomaly maps, scores, heat maps."""
from .anomaly_inferencer import AnomalyInferencer, check_anomaly_config
from .inferencer import (CheckpointMismatchError, OVSegInferencer, build_model, is_open_clip_state_dict,
                         load_config, load_model_weights, resize_scores, set_text_templates,
                         strip_weight_sources)
from .inputs import ImageInputs, check_device, inference_pipeline_cfg
from .visualization import blend_mask, class_palette, draw_heat_map, draw_legend, draw_overlay

__all__ = [
    'AnomalyInferencer', 'CheckpointMismatchError', 'ImageInputs', 'OVSegInferencer', 'blend_mask',
    'build_model', 'check_anomaly_config', 'check_device', 'class_palette', 'draw_heat_map', 'draw_legend',
    'draw_overlay', 'inference_pipeline_cfg', 'is_open_clip_state_dict', 'load_config', 'load_model_weights',
    'resize_scores', 'set_text_templates', 'strip_weight_sources',
]
