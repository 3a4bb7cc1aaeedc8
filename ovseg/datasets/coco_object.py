"""COCO-Object: COCO-Stuff 164k images labelled with background + the 80 COCO thing classes."""
from mmseg.datasets import COCOStuffDataset

from ovseg.registry import DATASETS
from ovseg.text import load_vocabulary

from .basesegdataset import CheckedSegDataset


@DATASETS.register_module()
class COCOObjectDataset(CheckedSegDataset):
    """COCO-Object 81 (background + 80 things), the training-free segmentation benchmark.

    Labels are ``<image>_instanceTrainIds.png`` written by
    ``tools/dataset_converters/coco_object.py`` next to the COCO-Stuff 164k stuffthingmaps: 0 is
    background (every stuff class and the unlabeled pixels), 1..80 the thing classes in COCO order.
    Expected layout under ``data_root`` (e.g. ``data/coco_stuff164k``)::

        images/val2017/*.jpg
        annotations/val2017/*_instanceTrainIds.png

    Class names are ``ovseg.text.load_vocabulary('coco_object81').names``.

    Args:
        img_suffix (str): Default '.jpg'.
        seg_map_suffix (str): Default '_instanceTrainIds.png'.
        **kwargs: passed to ``BaseSegDataset``.
    """

    METAINFO = dict(classes=tuple(load_vocabulary('coco_object81').names),
                    palette=[[0, 0, 0]] + COCOStuffDataset.METAINFO['palette'][:80])
    PREPARE_HINT = ('Download the COCO 2017 images and stuffthingmaps_trainval2017.zip into '
                    'data/coco_stuff164k, then run python tools/dataset_converters/coco_object.py '
                    'data/coco_stuff164k (docs/datasets.md#coco-object)')

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '_instanceTrainIds.png',
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
