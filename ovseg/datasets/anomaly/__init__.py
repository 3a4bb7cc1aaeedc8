"""Anomaly detection datasets (MVTec AD, VisA), mask loading and the per-category batch sampler.

Importing this package registers ``MVTecADDataset``, ``VisADataset`` (DATASETS), ``LoadAnomalyMask``
(TRANSFORMS) and ``CategoryBatchSampler`` (DATA_SAMPLERS) into mmseg's registries.
"""
from .mvtec import ANOMALY_METAINFO, MVTEC_CATEGORIES, MVTecADDataset
from .references import attach_references, draw_references, mvtec_normal_train
from .samplers import CategoryBatchSampler
from .synthetic import make_mvtec_like, make_visa_like
from .transforms import LoadAnomalyMask
from .visa import VISA_CATEGORIES, VisADataset

__all__ = ['ANOMALY_METAINFO', 'CategoryBatchSampler', 'LoadAnomalyMask', 'MVTEC_CATEGORIES',
           'MVTecADDataset', 'attach_references', 'draw_references', 'mvtec_normal_train',
           'VISA_CATEGORIES', 'VisADataset', 'make_mvtec_like', 'make_visa_like']
