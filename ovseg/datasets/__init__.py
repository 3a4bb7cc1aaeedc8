"""Datasets mmseg lacks (VOC-20, COCO-Object, ADE-847, PC-459, COCO / ADE / Cityscapes panoptic) and their
transforms.

VOC-21, PC-60, PC-59, COCO-Stuff-171, Cityscapes and ADE-150 use mmseg's own dataset classes, through
subclasses that check the data root (``checked_mmseg.py``).
"""
from .ade847 import ADE20K847Dataset
from .anomaly import CategoryBatchSampler, LoadAnomalyMask, MVTecADDataset, VisADataset  # noqa: F401
from .ade20k_panoptic import ADE20KPanopticDataset
from .basesegdataset import UINT16_IGNORE_INDEX, CheckedSegDataset, Uint16SegDataset
from .checked_mmseg import (CheckedADE20KDataset, CheckedCityscapesDataset, CheckedCOCOStuffDataset,
                            CheckedPascalContextDataset, CheckedPascalContextDataset59,
                            CheckedPascalVOCDataset)
from .cityscapes_panoptic import CityscapesPanopticDataset
from .coco_object import COCOObjectDataset
from .coco_panoptic import COCOPanopticDataset
from .image_folder import BrightnessJitter, ImageFolderDataset, list_images
from .panoptic_semantic import PanopticSemanticDataset
from .pascal_context459 import PascalContext459Dataset
from .transforms import *  # noqa: F401,F403  registers the transforms
from .voc20 import PascalVOC20Dataset

__all__ = [
    'ADE20K847Dataset', 'ADE20KPanopticDataset', 'BrightnessJitter', 'COCOObjectDataset',
    'COCOPanopticDataset', 'CheckedADE20KDataset', 'CheckedCOCOStuffDataset', 'CheckedCityscapesDataset',
    'CheckedPascalContextDataset', 'CheckedPascalContextDataset59', 'CheckedPascalVOCDataset',
    'CheckedSegDataset', 'CityscapesPanopticDataset', 'ImageFolderDataset',
    'PanopticSemanticDataset', 'PascalContext459Dataset', 'PascalVOC20Dataset', 'UINT16_IGNORE_INDEX',
    'Uint16SegDataset', 'list_images',
]
