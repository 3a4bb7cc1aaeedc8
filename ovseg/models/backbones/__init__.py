from . import attention_strategies  # noqa: F401  registers the per-block attention strategies
from .affinity import Affinity, affinity_from_features, affinity_from_masks
from .corrclip_backbone import CorrCLIPBackbone
from .open_clip_backbone import OpenCLIPBackbone
from .open_clip_loader import WeightsUnavailableError, build_open_clip
from .sam_encoder_backbone import SAMEncoderBackbone
from .vfm_backbone import VFMBackbone, VFMTower
from .vfm_loader import VFM_ARCHS, build_vfm
from .vit_walker import WalkContext, WalkResult, build_strategies, walk

__all__ = ['Affinity', 'CorrCLIPBackbone', 'OpenCLIPBackbone', 'SAMEncoderBackbone', 'VFMBackbone', 'VFMTower', 'VFM_ARCHS', 'WalkContext', 'WalkResult', 'WeightsUnavailableError',
           'affinity_from_features', 'affinity_from_masks', 'build_open_clip', 'build_vfm', 'build_strategies', 'walk']
