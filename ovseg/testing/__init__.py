"""Tiny model configs and helpers reused by ovseg's tests and by downstream projects' tests."""
from .parity import det_state_dict_for, load_detweights, parity_dir
from .tiny import CLIP_MEAN_255, CLIP_STD_255, tiny_clip_arch, tiny_maskclip_cfg
from .tools import load_tool

__all__ = ['CLIP_MEAN_255', 'CLIP_STD_255', 'det_state_dict_for', 'load_detweights', 'load_tool', 'parity_dir',
           'tiny_clip_arch', 'tiny_maskclip_cfg']
