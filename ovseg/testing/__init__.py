"""Tiny model configs and helpers reused by ovseg's tests and by downstream projects' tests."""
from .parity import det_state_dict_for, load_detweights, parity_dir
from .tiny import CLIP_MEAN_255, CLIP_STD_255, tiny_anomaly_cfg, tiny_clip_arch, tiny_maskclip_cfg
from .tolerance import (EPS32, EPS64, assert_close, assert_equal_away_from_ties, assert_same_order,
                        float32_tolerance, softmax_error_model, threshold_margin, tolerance_for, top2_margin,
                        tower_error_model)
from .tools import load_tool

__all__ = ['CLIP_MEAN_255', 'CLIP_STD_255', 'EPS32', 'EPS64', 'assert_close', 'assert_equal_away_from_ties',
           'assert_same_order', 'det_state_dict_for', 'float32_tolerance', 'load_detweights', 'load_tool',
           'parity_dir', 'softmax_error_model', 'threshold_margin', 'tiny_anomaly_cfg', 'tiny_clip_arch',
           'tiny_maskclip_cfg', 'tolerance_for', 'top2_margin', 'tower_error_model']
