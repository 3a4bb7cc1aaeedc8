"""Importing this package registers every ovseg model component into mmseg's MODELS registry."""
from . import (anomaly, backbones, decode_heads, fcclip, frozenseg, losses, maftplus, proposals,  # noqa: F401
               refiners, segmentors, text_encoders)
from .utils import DenseFeatures

__all__ = ['DenseFeatures']
