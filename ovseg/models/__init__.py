"""Importing this package registers every ovseg model component into mmseg's MODELS registry."""
from . import backbones, decode_heads, refiners, segmentors, text_encoders  # noqa: F401
from .utils import DenseFeatures

__all__ = ['DenseFeatures']
