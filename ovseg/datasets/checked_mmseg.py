"""mmseg's VOC-21, PC-60, PC-59, COCO-Stuff-171, Cityscapes-19 and ADE-150 datasets, checked.

mmseg's classes fail on a missing or unconverted data root with an ``AssertionError`` on the split
file, an ``os.scandir`` traceback, or (COCO-Stuff and Cityscapes before their converters ran) a
missing label file in the middle of the run. These subclasses add ``CheckedSegDataset``'s checks:
at construction, an error names the missing folder or files and the download / converter step
that creates them (``docs/datasets.md``). Everything else (class names, palettes, suffixes,
``reduce_zero_label``) is mmseg's.
"""
from mmseg.datasets import (ADE20KDataset, CityscapesDataset, COCOStuffDataset,
                            PascalContextDataset, PascalContextDataset59, PascalVOCDataset)

from ovseg.registry import DATASETS

from .basesegdataset import CheckedSegDataset

_PASCAL_CONTEXT_HINT = (
    "Extract VOCtrainval_03-May-2010.tar into data/, then run mmseg's "
    'tools/dataset_converters/pascal_context.py data/VOCdevkit '
    'data/VOCdevkit/VOC2010/trainval_merged.json (Detail API; writes SegmentationClassContext/ '
    'and ImageSets/SegmentationContext/, docs/datasets.md#pascal-context-60--59)')


@DATASETS.register_module()
class CheckedPascalVOCDataset(CheckedSegDataset, PascalVOCDataset):
    """mmseg's ``PascalVOCDataset`` (VOC-21) that names a missing folder, split file or file."""

    PREPARE_HINT = ('Download and extract VOCtrainval_11-May-2012.tar (gives VOCdevkit/VOC2012); '
                    'no conversion is needed, see docs/datasets.md#pascal-voc-21')


@DATASETS.register_module()
class CheckedPascalContextDataset(CheckedSegDataset, PascalContextDataset):
    """mmseg's ``PascalContextDataset`` (PC-60) naming a missing folder and mmseg's converter."""

    PREPARE_HINT = _PASCAL_CONTEXT_HINT


@DATASETS.register_module()
class CheckedPascalContextDataset59(CheckedSegDataset, PascalContextDataset59):
    """mmseg's ``PascalContextDataset59`` (PC-59) naming a missing folder and mmseg's converter."""

    PREPARE_HINT = _PASCAL_CONTEXT_HINT


@DATASETS.register_module()
class CheckedCOCOStuffDataset(CheckedSegDataset, COCOStuffDataset):
    """mmseg's ``COCOStuffDataset`` (COCO-Stuff-171) naming a missing folder and mmseg's converter.

    Without the converter's ``*_labelTrainIds.png`` the error comes at construction, not mid-run.
    """

    PREPARE_HINT = ('Download the COCO 2017 images and stuffthingmaps_trainval2017.zip into '
                    "data/coco_stuff164k, then run mmseg's "
                    'tools/dataset_converters/coco_stuff164k.py data/coco_stuff164k (writes '
                    '*_labelTrainIds.png, docs/datasets.md#coco-stuff-171)')


@DATASETS.register_module()
class CheckedCityscapesDataset(CheckedSegDataset, CityscapesDataset):
    """mmseg's ``CityscapesDataset`` (Cityscapes-19) naming a missing folder and mmseg's converter.

    Without the converter's ``*_gtFine_labelTrainIds.png`` the error comes at construction, not
    mid-run.
    """

    PREPARE_HINT = ('Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into '
                    "data/cityscapes, then run mmseg's tools/dataset_converters/cityscapes.py "
                    'data/cityscapes (needs cityscapesscripts; writes *_gtFine_labelTrainIds.png, '
                    'docs/datasets.md#cityscapes-19)')


@DATASETS.register_module()
class CheckedADE20KDataset(CheckedSegDataset, ADE20KDataset):
    """mmseg's ``ADE20KDataset`` (ADE-150) that names a missing folder or file."""

    PREPARE_HINT = ('Download ADEChallengeData2016.zip and extract it into data/ade; no conversion '
                    'is needed, see docs/datasets.md#ade-150')
