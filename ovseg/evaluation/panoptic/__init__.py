"""Panoptic quality (panopticapi's algorithm) and mask AP (pycocotools) for panoptic datasets."""
from .instance_ap_metric import OVInstanceAPMetric
from .panoptic_metric import OVPanopticMetric
from .pq import PQStat, PQStatCat, pq_compute, pq_stat_single

__all__ = ['OVInstanceAPMetric', 'OVPanopticMetric', 'PQStat', 'PQStatCat', 'pq_compute', 'pq_stat_single']
