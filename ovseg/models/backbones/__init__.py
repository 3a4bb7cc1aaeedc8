from . import attention_strategies  # noqa: F401  registers the per-block attention strategies
from .affinity import Affinity, affinity_from_features, affinity_from_masks
from .open_clip_backbone import OpenCLIPBackbone
from .open_clip_loader import WeightsUnavailableError, build_open_clip
from .vit_walker import WalkContext, WalkResult, build_strategies, walk

__all__ = ['Affinity', 'OpenCLIPBackbone', 'WalkContext', 'WalkResult', 'WeightsUnavailableError',
           'affinity_from_features', 'affinity_from_masks', 'build_open_clip', 'build_strategies', 'walk']
