"""COCO panoptic (133 classes): images with panoptic PNGs and their JSON ``segments_info``."""
import os.path as osp
from typing import Dict, List, Optional

import mmengine

from ovseg.registry import DATASETS

from .basesegdataset import CheckedSegDataset

# Category names of panoptic_{train,val}2017.json in category-id order (80 things, then 53 stuff);
# the contiguous label of a category is its position here, as in detectron2's COCO panoptic
# metadata.
COCO_PANOPTIC_THINGS = ('person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
                        'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
                        'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
                        'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
                        'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
                        'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
                        'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
                        'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
                        'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
                        'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
                        'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
                        'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
                        'hair drier', 'toothbrush')
COCO_PANOPTIC_STUFF = ('banner', 'blanket', 'bridge', 'cardboard', 'counter', 'curtain',
                       'door-stuff', 'floor-wood', 'flower', 'fruit', 'gravel', 'house', 'light',
                       'mirror-stuff', 'net', 'pillow', 'platform', 'playingfield', 'railroad',
                       'river', 'road', 'roof', 'sand', 'sea', 'shelf', 'snow', 'stairs', 'tent',
                       'towel', 'wall-brick', 'wall-stone', 'wall-tile', 'wall-wood', 'water-other',
                       'window-blind', 'window-other', 'tree-merged', 'fence-merged',
                       'ceiling-merged', 'sky-other-merged', 'cabinet-merged', 'table-merged',
                       'floor-other-merged', 'pavement-merged', 'mountain-merged', 'grass-merged',
                       'dirt-merged', 'paper-merged', 'food-other-merged', 'building-other-merged',
                       'rock-merged', 'wall-other-merged', 'rug-merged')


@DATASETS.register_module()
class COCOPanopticDataset(CheckedSegDataset):
    """COCO panoptic segmentation (train2017 / val2017), 80 thing + 53 stuff classes.

    Each data info carries the panoptic PNG path and the image's ``segments_info``, each segment as
    ``dict(id, label, iscrowd, isthing, area)`` with ``label`` the contiguous class index (0..132);
    ``LoadPanopticAnnotations`` turns them into a semantic map and a segment-id map, and
    ``panoptic_to_instances`` into per-segment masks. Expected layout under ``data_root``
    (``data/coco``, the official release with ``annotations/panoptic_val2017.zip`` extracted in
    place)::

        val2017/*.jpg
        annotations/panoptic_val2017.json
        annotations/panoptic_val2017/*.png

    Args:
        ann_file (str): the panoptic JSON, e.g. 'annotations/panoptic_val2017.json'.
        data_prefix (dict, optional): ``img_path`` (images) and ``seg_map_path`` (panoptic PNGs).
            Default ``dict(img_path='val2017', seg_map_path='annotations/panoptic_val2017')``.
        **kwargs: passed to ``BaseSegDataset``.

    Raises:
        ValueError: the JSON's categories are not the 133 COCO panoptic ones, or an annotation
            refers to an unknown image or category.
    """

    METAINFO = dict(classes=COCO_PANOPTIC_THINGS + COCO_PANOPTIC_STUFF,
                    thing_classes=COCO_PANOPTIC_THINGS, stuff_classes=COCO_PANOPTIC_STUFF)
    PREPARE_HINT = (
        'Download val2017.zip (or train2017.zip) and panoptic_annotations_trainval2017.zip '
        'into data/coco and extract annotations/panoptic_val2017.zip in place '
        '(docs/datasets.md#coco-panoptic)')

    def __init__(self, ann_file: str, data_prefix: Optional[dict] = None, **kwargs) -> None:
        if data_prefix is None:
            data_prefix = dict(img_path='val2017', seg_map_path='annotations/panoptic_val2017')
        super().__init__(ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    def _category_labels(self, categories: List[dict]) -> Dict[int, dict]:
        """Category id -> dict(label, isthing), checking the JSON against ``METAINFO``."""
        categories = sorted(categories, key=lambda c: c['id'])
        names = tuple(c['name'] for c in categories)
        if names != self.METAINFO['classes']:
            raise ValueError(
                f'{self.ann_file}: categories {names[:5]}... ({len(names)}) are not the 133 '
                'COCO panoptic categories this dataset expects')
        return {c['id']: dict(label=k, isthing=bool(c['isthing']))
                for k, c in enumerate(categories)}

    def _list_samples(self) -> List[dict]:
        """One data info per annotation of the panoptic JSON, in JSON order."""
        coco = mmengine.load(self.ann_file, file_format='json', backend_args=self.backend_args)
        cats = self._category_labels(coco['categories'])
        images = {img['id']: img for img in coco['images']}
        img_dir, seg_dir = self.data_prefix['img_path'], self.data_prefix['seg_map_path']
        data_list = []
        for ann in coco['annotations']:
            img = images.get(ann['image_id'])
            if img is None:
                raise ValueError(
                    f'{self.ann_file}: annotation {ann["file_name"]} refers to image id '
                    f'{ann["image_id"]}, which is not in "images"')
            segments = []
            for seg in ann['segments_info']:
                if seg['category_id'] not in cats:
                    raise ValueError(f'{self.ann_file}: {ann["file_name"]} segment {seg["id"]} has '
                                     f'unknown category id {seg["category_id"]}')
                segments.append(dict(id=seg['id'], iscrowd=bool(seg.get('iscrowd', 0)),
                                     area=seg.get('area'), **cats[seg['category_id']]))
            data_list.append(dict(
                img_path=osp.join(img_dir, img['file_name']),
                seg_map_path=osp.join(seg_dir, ann['file_name']), img_id=img['id'],
                height=img['height'], width=img['width'], segments_info=segments,
                label_map=self.label_map, reduce_zero_label=self.reduce_zero_label, seg_fields=[]))
        return data_list
