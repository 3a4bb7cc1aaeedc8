"""Metrics mmseg lacks."""
from .ov_iou_metric import OVIoUMetric

__all__ = ['OVIoUMetric']
