"""PASCAL Context full (PC-459): every class of the Pascal Context annotations, 16-bit labels."""
from ovseg.registry import DATASETS
from ovseg.text import load_vocabulary

from .basesegdataset import Uint16SegDataset


@DATASETS.register_module()
class PascalContext459Dataset(Uint16SegDataset):
    """PC-459: Pascal Context with all 459 classes of ``labels.txt`` (ids 1..459 -> 0..458).

    Labels are 16-bit TIFFs (0..458, 65535 unlabeled) written by
    ``tools/dataset_converters/pascal_context_459.py`` from the ``trainval/*.mat`` files, with the
    same encoding as detectron2's ``annotations_ctx459``. Expected layout under ``data_root``
    (``VOCdevkit/VOC2010``)::

        JPEGImages/*.jpg
        SegmentationClassContext459/*.tif
        ImageSets/Main/{train,val}.txt    # the Pascal Context splits (4998 / 5105 images)

    Load with ``LoadUint16Annotations`` and evaluate with ``ignore_index=65535``.
    Class names are ``ovseg.text.load_vocabulary('pc459').names``.

    Args:
        ann_file (str): split file, e.g. 'ImageSets/Main/val.txt'.
        img_suffix (str): Default '.jpg'.
        seg_map_suffix (str): Default '.tif'.
        **kwargs: passed to ``Uint16SegDataset``.
    """

    METAINFO = dict(classes=tuple(load_vocabulary('pc459').names))
    PREPARE_HINT = (
        'Extract VOCtrainval_03-May-2010.tar and the Pascal Context trainval.tar.gz into '
        'data/VOCdevkit/VOC2010, then run python '
        'tools/dataset_converters/pascal_context_459.py data/VOCdevkit/VOC2010 '
        '(docs/datasets.md#pascal-context-459)')

    def __init__(self, ann_file: str = '', img_suffix: str = '.jpg', seg_map_suffix: str = '.tif',
                 **kwargs) -> None:
        super().__init__(ann_file=ann_file, img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         **kwargs)
