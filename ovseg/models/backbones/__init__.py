from .open_clip_backbone import OpenCLIPBackbone
from .open_clip_loader import WeightsUnavailableError, build_open_clip

__all__ = ['OpenCLIPBackbone', 'WeightsUnavailableError', 'build_open_clip']
