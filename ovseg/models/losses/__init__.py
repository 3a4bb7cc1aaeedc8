from .mask_set_criterion import MaskSetCriterion
from .point_mask_matcher import PointMaskHungarianMatcher

__all__ = ['MaskSetCriterion', 'PointMaskHungarianMatcher']
