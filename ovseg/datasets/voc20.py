"""PASCAL VOC 20: the VOC 2012 segmentation set without its background class."""
from mmseg.datasets import PascalVOCDataset

from ovseg.registry import DATASETS
from ovseg.text import load_vocabulary

from .basesegdataset import CheckedSegDataset


@DATASETS.register_module()
class PascalVOC20Dataset(CheckedSegDataset):
    """PASCAL VOC 2012 with the 20 object classes only (VOC-20).

    Reads the standard ``VOCdevkit/VOC2012`` layout (``JPEGImages``, ``SegmentationClass`` palette
    PNGs, ``ImageSets/Segmentation/{train,val}.txt``): no conversion is needed.
    ``reduce_zero_label=True`` turns background (0) into the ignore index 255 and shifts the objects
    to 0..19; the VOC boundary value 255 stays ignored. This is the VOC-20 protocol of the
    training-free methods (background pixels are not scored) and equals detectron2's
    ``annotations_pascal20``.

    Class names are ``ovseg.text.load_vocabulary('voc20').names``.

    Args:
        ann_file (str): split file, e.g. 'ImageSets/Segmentation/val.txt'.
        img_suffix (str): Default '.jpg'.
        seg_map_suffix (str): Default '.png'.
        reduce_zero_label (bool): Default True (background ignored).
        **kwargs: passed to ``BaseSegDataset``.
    """

    METAINFO = dict(classes=tuple(load_vocabulary('voc20').names),
                    palette=PascalVOCDataset.METAINFO['palette'][1:])
    PREPARE_HINT = (
        'Download and extract VOCtrainval_11-May-2012.tar (gives VOCdevkit/VOC2012); no '
        'conversion is needed, see docs/datasets.md#pascal-voc-20')

    def __init__(self, ann_file: str, img_suffix: str = '.jpg', seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = True, **kwargs) -> None:
        super().__init__(ann_file=ann_file, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
