"""Evaluation metrics; importing registers them into mmseg's METRICS registry."""
from .metrics import *  # noqa: F401,F403
from .anomaly import AnomalyLocalVisualizer, AnomalyMetric  # noqa: F401  registers METRICS / VISUALIZERS
from .panoptic import OVInstanceAPMetric, OVPanopticMetric, pq_compute

__all__ = ['AnomalyMetric', 'OVIoUMetric', 'OVInstanceAPMetric', 'OVPanopticMetric', 'pq_compute']  # noqa: F405
