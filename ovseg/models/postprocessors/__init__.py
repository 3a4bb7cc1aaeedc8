"""Post-processors applied to score maps after inference (PAMR, ...), usable by any segmentor."""
from .pamr import PAMR, pamr

__all__ = ['PAMR', 'pamr']
