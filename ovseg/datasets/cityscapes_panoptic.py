"""Cityscapes-19 panoptic: cityscapesScripts' ``cityscapes_panoptic_val`` (COCO format) + trainId maps."""
import os.path as osp
from typing import Dict, List, Optional

from ovseg.registry import DATASETS
from ovseg.text import load_vocabulary

from .panoptic_semantic import PanopticSemanticDataset

CITYSCAPES_CLASSES = tuple(load_vocabulary('cityscapes19').names)
CITYSCAPES_THINGS = ('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')


@DATASETS.register_module()
class CityscapesPanopticDataset(PanopticSemanticDataset):
    """Cityscapes val with panoptic ground truth, as detectron2's ``cityscapes_fine_panoptic_val``.

    Expected layout under ``data_root`` (``data/cityscapes``): mmseg's Cityscapes-19 layout (its
    ``cityscapes.py`` converter writes the ``*_labelTrainIds.png``) plus the output of
    cityscapesScripts' ``createPanopticImgs.py`` (``python -m
    cityscapesscripts.preparation.createPanopticImgs --dataset-folder data/cityscapes/gtFine``)::

        leftImg8bit/val/<city>/<id>_leftImg8bit.png
        gtFine/val/<city>/<id>_gtFine_labelTrainIds.png     # semantic map (mIoU)
        gtFine/cityscapes_panoptic_val.json                 # 19 categories (label ids or train ids)
        gtFine/cityscapes_panoptic_val/<id>_gtFine_panoptic.png

    Categories are the 19 evaluated classes in label-id order (= train-id order), so ``label`` is
    the train id; groups of things (``car group``...) are crowd segments. Either JSON
    (``--use-train-id`` or not) works.

    Args:
        ann_file (str): the panoptic JSON. Default 'gtFine/cityscapes_panoptic_val.json'.
        data_prefix (dict, optional): ``img_path``, ``seg_map_path`` (trainId maps) and
            ``pan_map_path``. Default the val folders above.
        **kwargs: passed to ``BaseSegDataset``.

    Raises:
        ValueError: the JSON's categories are not the 19 Cityscapes classes.
    """

    METAINFO = dict(classes=CITYSCAPES_CLASSES, thing_classes=CITYSCAPES_THINGS,
                    stuff_classes=tuple(c for c in CITYSCAPES_CLASSES if c not in CITYSCAPES_THINGS))
    PREPARE_HINT = ('Run mmseg\'s tools/dataset_converters/cityscapes.py and cityscapesScripts\' '
                    'createPanopticImgs.py on data/cityscapes (docs/datasets.md#cityscapes-panoptic)')

    def __init__(self, ann_file: str = 'gtFine/cityscapes_panoptic_val.json',
                 data_prefix: Optional[dict] = None, **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val',
                               pan_map_path='gtFine/cityscapes_panoptic_val')
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def _category_labels(self, categories: List[dict]) -> Dict[int, dict]:
        """Category id -> dict(label = train id, isthing), checked against the 19 classes."""
        categories = sorted(categories, key=lambda c: c['id'])
        names = tuple(c['name'] for c in categories)
        things = tuple(c['name'] for c in categories if c['isthing'])
        if names != CITYSCAPES_CLASSES or things != CITYSCAPES_THINGS:
            raise ValueError(f'{self.ann_file}: categories {names[:5]}... ({len(names)}) are not the '
                             '19 Cityscapes classes with their 8 thing classes')
        return {c['id']: dict(label=k, isthing=bool(c['isthing'])) for k, c in enumerate(categories)}

    @staticmethod
    def _city(info: dict) -> str:
        return str(info['img_id']).split('_')[0]

    def _image_path(self, info: dict) -> str:
        folder, name = osp.split(info['img_path'])
        return osp.join(folder, self._city(info), name)

    def _semantic_path(self, info: dict, semantic_dir: str) -> str:
        return osp.join(semantic_dir, self._city(info), f'{info["img_id"]}_gtFine_labelTrainIds.png')
