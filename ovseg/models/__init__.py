"""Importing this package registers every ovseg model component into mmseg's MODELS registry."""
from . import anomaly, backbones, decode_heads, fcclip, losses, proposals, refiners, segmentors, text_encoders  # noqa: F401,E501
from .utils import DenseFeatures

__all__ = ['DenseFeatures']
