"""Importing this package registers every ovseg model component into mmseg's MODELS registry."""
from . import (anomaly, backbones, decode_heads, fcclip, losses, postprocessors, proposals, refiners,  # noqa: F401
               segmentors, text_encoders)
from .utils import DenseFeatures

__all__ = ['DenseFeatures']
