"""ADE20K-150 panoptic: Mask2Former's ``ade20k_panoptic_{train,val}`` layout over ADEChallengeData2016."""
import os.path as osp
from typing import Dict, List, Optional

from ovseg.registry import DATASETS
from ovseg.text import load_vocabulary

from .panoptic_semantic import PanopticSemanticDataset

# Indices (= category ids of ade20k_panoptic_*.json) of the 100 ADE-150 classes that are things
# (``isthing`` in the JSON: the classes with instance annotations); the other 50 are stuff.
ADE150_THING_INDICES = (
    7, 8, 10, 12, 14, 15, 18, 19, 20, 22, 23, 24, 27, 30, 31, 32, 33, 35, 36, 37, 38, 39, 41, 42, 43, 44, 45,
    47, 49, 50, 53, 55, 56, 57, 58, 62, 64, 65, 66, 67, 69, 70, 71, 72, 73, 74, 75, 76, 78, 80, 81, 82, 83,
    85, 86, 87, 88, 89, 90, 92, 93, 95, 97, 98, 102, 103, 104, 107, 108, 110, 111, 112, 115, 116, 118, 119,
    120, 121, 123, 124, 125, 126, 127, 129, 130, 132, 133, 134, 135, 136, 137, 138, 139, 142, 143, 144,
    146, 147, 148, 149)
ADE150_CLASSES = tuple(load_vocabulary('ade150').names)


@DATASETS.register_module()
class ADE20KPanopticDataset(PanopticSemanticDataset):
    """ADE20K-150 panoptic as prepared by Mask2Former's ``datasets/prepare_ade20k_pan_seg.py``.

    Expected layout under ``data_root`` (``data/ade/ADEChallengeData2016``)::

        images/validation/ADE_val_*.jpg
        annotations/validation/ADE_val_*.png      # ADE semantic labels (0 = other), mmseg's ADE-150
        ade20k_panoptic_val.json                  # 150 categories, ids 0..149 = ADE-150 class index
        ade20k_panoptic_val/ADE_val_*.png         # segment id = R + 256 G + 256^2 B, 0 void

    Each data info has ``seg_map_path`` = the **semantic** PNG (loaded by mmseg's
    ``LoadAnnotations``; ``reduce_zero_label=True`` gives detectron2's ``annotations_detectron2``
    labels, which FC-CLIP's mIoU uses), ``pan_map_path`` = the panoptic PNG (loaded by
    ``LoadPanopticSegIds``) and ``segments_info`` (``id``, ``label`` = category id, ``iscrowd``,
    ``isthing``, ``area``). FC-CLIP (as Mask2Former) scores mask AP against another file,
    ``ade20k_instance_val.json`` (Mask2Former's ``datasets/prepare_ade20k_ins_seg.py``, from the same
    instance PNGs but without the panoptic conversion's overlap resolution); give it as
    ``instance_ann_file`` and ``OVInstanceAPMetric`` reads it from the dataset's metainfo, as
    detectron2's ``COCOEvaluator`` reads the panoptic dataset's ``json_file``.

    Args:
        ann_file (str): the panoptic JSON. Default 'ade20k_panoptic_val.json'.
        instance_ann_file (str, optional): COCO instance JSON for mask AP (relative to ``data_root``),
            e.g. 'ade20k_instance_val.json'; None scores against the panoptic thing segments. Default None.
        data_prefix (dict, optional): ``img_path``, ``seg_map_path`` (semantic PNGs) and
            ``pan_map_path`` (panoptic PNGs). Default the validation folders above.
        reduce_zero_label (bool): ADE's label 0 ('other') -> 255, classes shift to 0..149.
            Default True.
        **kwargs: passed to ``BaseSegDataset``.

    Raises:
        ValueError: the JSON's categories are not ids 0..149 with the things above.
    """

    METAINFO = dict(classes=ADE150_CLASSES,
                    thing_classes=tuple(ADE150_CLASSES[i] for i in ADE150_THING_INDICES),
                    stuff_classes=tuple(c for i, c in enumerate(ADE150_CLASSES)
                                        if i not in ADE150_THING_INDICES))
    PREPARE_HINT = ('Extract ADEChallengeData2016.zip into data/ade and, with ADE20K\'s '
                    'annotations_instance/ in it, run Mask2Former\'s datasets/prepare_ade20k_pan_seg.py '
                    '(docs/datasets.md#ade-150-panoptic)')

    def __init__(self, ann_file: str = 'ade20k_panoptic_val.json', data_prefix: Optional[dict] = None,
                 reduce_zero_label: bool = True, instance_ann_file: Optional[str] = None, **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(img_path='images/validation', seg_map_path='annotations/validation',
                               pan_map_path='ade20k_panoptic_val')
        super().__init__(ann_file=ann_file, data_prefix=data_prefix,
                         reduce_zero_label=reduce_zero_label, **kwargs)
        if instance_ann_file is not None:
            path = osp.join(self.data_root or '', instance_ann_file)
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'{type(self).__name__}: instance annotations {path} not found. Make them with '
                    "Mask2Former's datasets/prepare_ade20k_ins_seg.py (docs/datasets.md#ade-150-panoptic), "
                    'or set instance_ann_file=None to score mask AP against the panoptic thing segments.')
            self._metainfo['instance_ann_file'] = path

    def _category_labels(self, categories: List[dict]) -> Dict[int, dict]:
        """Category id -> dict(label, isthing); ids must be 0..149 with the ADE-150 things."""
        ids = sorted(c['id'] for c in categories)
        if ids != list(range(len(ADE150_CLASSES))):
            raise ValueError(f'{self.ann_file}: category ids {ids[:5]}... ({len(ids)}) are not the '
                             '0..149 of ADE20K-150 panoptic')
        things = sorted(c['id'] for c in categories if c['isthing'])
        if things != list(ADE150_THING_INDICES):
            raise ValueError(f'{self.ann_file}: thing categories {things[:5]}... ({len(things)}) are '
                             'not the 100 ADE20K-150 thing classes')
        return {c['id']: dict(label=c['id'], isthing=bool(c['isthing'])) for c in categories}
