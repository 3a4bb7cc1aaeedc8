"""Tiny generated panoptic datasets in the real on-disk layouts (COCO, ADE20K, Cityscapes), for tests.

Every image is a flat-coloured scene (one colour per class, plus noise) of stuff bands and thing
rectangles, so a tiny model can fit it; the files have the real names, formats and encodings
(JPEG / PNG images, COCO panoptic PNGs with id = R + 256 G + 256^2 B, JSON ``segments_info``).
"""
import json
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image

from ovseg.text import load_vocabulary


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids -> (H, W, 3) uint8 COCO panoptic colours."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def _scene(rng, size, stuff: Sequence[int], things: Sequence[int], crowd: bool = False):
    """Class map + segments: horizontal stuff bands, 1-2 thing boxes each, a void strip at the top.

    Returns:
        tuple: (H, W) int64 class map (-1 void), (H, W) int64 segment ids (0 void), and
        ``[(segment id, class, iscrowd)]``.
    """
    h, w = size
    classes = np.full(size, -1, np.int64)
    ids = np.zeros(size, np.int64)
    segments = []
    bounds = np.linspace(2, h, len(stuff) + 1).astype(int)  # rows 0-1 stay void
    for k, cls in enumerate(stuff):
        classes[bounds[k]:bounds[k + 1]] = cls
        ids[bounds[k]:bounds[k + 1]] = 10 + k
        segments.append((10 + k, cls, 0))
    next_id = 100
    for cls in things:
        for _ in range(int(rng.integers(1, 3))):
            y, x = int(rng.integers(2, h - h // 3)), int(rng.integers(0, w - w // 3))
            bh, bw = int(rng.integers(h // 6, h // 3)), int(rng.integers(w // 6, w // 3))
            classes[y:y + bh, x:x + bw], ids[y:y + bh, x:x + bw] = cls, next_id
            segments.append((next_id, cls, 0))
            next_id += 37  # ids with a G channel too
    if crowd and things:
        classes[h - 3:, :w // 4], ids[h - 3:, :w // 4] = things[0], 7
        segments.append((7, things[0], 1))
    present = set(np.unique(ids).tolist())
    return classes, ids, [s for s in segments if s[0] in present]


def _image(rng, classes: np.ndarray, num_classes: int) -> np.ndarray:
    palette = np.random.default_rng(1234).integers(0, 256, (num_classes + 1, 3))
    image = palette[classes] + rng.normal(0, 8, classes.shape + (3,))
    return np.clip(image, 0, 255).astype(np.uint8)


def _segments_info(ids, segments, category_ids) -> List[dict]:
    return [dict(id=int(i), category_id=int(category_ids[c]), iscrowd=int(crowd), area=int((ids == i).sum()))
            for i, c, crowd in segments]


def _write_json(path: Path, images, annotations, categories) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))


def make_coco_panoptic_layout(root, split: str = 'val2017', num_images: int = 2,
                              size: Tuple[int, int] = (48, 64), seed: int = 0, crowd: bool = True) -> str:
    """``root/{split}/*.jpg`` + ``root/annotations/panoptic_{split}.json`` and PNG folder.

    133 COCO panoptic categories (ids 1..133 in the dataset's order; the real ids have gaps, which
    the dataset does not depend on). Scenes: 'wall-other-merged' and 'grass-merged' bands,
    'person' and 'dog' boxes, optionally a crowd of persons. Returns ``root``.
    """
    from ovseg.datasets.coco_panoptic import COCO_PANOPTIC_STUFF, COCO_PANOPTIC_THINGS
    names = COCO_PANOPTIC_THINGS + COCO_PANOPTIC_STUFF
    categories = [dict(id=k + 1, name=n, isthing=int(k < len(COCO_PANOPTIC_THINGS)))
                  for k, n in enumerate(names)]
    root, rng = Path(root), np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / 'annotations' / f'panoptic_{split}').mkdir(parents=True, exist_ok=True)
    stuff, things = [names.index('wall-other-merged'), names.index('grass-merged')], [0, names.index('dog')]
    images, annotations = [], []
    for i in range(num_images):
        classes, ids, segments = _scene(rng, size, stuff, things, crowd)
        name = f'{i + 1:012d}'
        Image.fromarray(_image(rng, classes, len(names))).save(root / split / f'{name}.jpg', quality=95)
        Image.fromarray(id_to_rgb(ids)).save(root / 'annotations' / f'panoptic_{split}' / f'{name}.png')
        images.append(dict(id=i + 1, file_name=f'{name}.jpg', height=size[0], width=size[1]))
        category_ids = {k: k + 1 for k in range(len(names))}
        annotations.append(dict(image_id=i + 1, file_name=f'{name}.png',
                                segments_info=_segments_info(ids, segments, category_ids)))
    _write_json(root / 'annotations' / f'panoptic_{split}.json', images, annotations, categories)
    return str(root)


def instance_annotations(ids: np.ndarray, segments, image_id: int, start_id: int = 1) -> List[dict]:
    """COCO instance annotations (RLE ``segmentation`` with str counts, ``area``, ``bbox``) of the
    non-crowd segments ``[(segment id, category id, iscrowd)]`` of a segment-id map."""
    import pycocotools.mask as mask_util
    anns = []
    for seg_id, category, crowd in segments:
        if crowd:
            continue
        rle = mask_util.encode(np.asfortranarray((ids == seg_id).astype(np.uint8)))
        anns.append(dict(id=start_id + len(anns), image_id=image_id, category_id=int(category), iscrowd=0,
                         segmentation=dict(size=rle['size'], counts=rle['counts'].decode()),
                         area=float(mask_util.area(rle)), bbox=mask_util.toBbox(rle).tolist()))
    return anns


def make_ade_panoptic_layout(root, num_images: int = 2, size: Tuple[int, int] = (48, 64),
                             seed: int = 0) -> str:
    """``root`` = ADEChallengeData2016 with val images, semantic PNGs, Mask2Former's panoptic files and
    its ``ade20k_instance_val.json`` (here the panoptic thing segments as COCO instances).

    Categories 0..149 (ids = ADE-150 indices, ``isthing`` as ``prepare_ade20k_pan_seg.py`` sets it);
    semantic PNGs hold index + 1 (0 = other). Scenes: 'wall' and 'floor' bands, 'bed' and 'person'
    boxes; the top rows are 'other' (void). Returns ``root``.
    """
    from ovseg.datasets.ade20k_panoptic import ADE150_CLASSES, ADE150_THING_INDICES
    categories = [dict(id=k, name=n, isthing=int(k in ADE150_THING_INDICES))
                  for k, n in enumerate(ADE150_CLASSES)]
    root, rng = Path(root), np.random.default_rng(seed)
    for sub in ('images/validation', 'annotations/validation', 'ade20k_panoptic_val'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    images, annotations, instance_images, instances = [], [], [], []
    for i in range(num_images):
        classes, ids, segments = _scene(rng, size, [0, 3], [ADE150_CLASSES.index('bed'), 12])
        name = f'ADE_val_{i + 1:08d}'
        image = Image.fromarray(_image(rng, classes, 150))
        image.save(root / 'images/validation' / f'{name}.jpg', quality=95)
        Image.fromarray((classes + 1).astype(np.uint8)).save(root / 'annotations/validation' / f'{name}.png')
        Image.fromarray(id_to_rgb(ids)).save(root / 'ade20k_panoptic_val' / f'{name}.png')
        images.append(dict(id=name, file_name=f'{name}.jpg', height=size[0], width=size[1]))
        annotations.append(dict(image_id=name, file_name=f'{name}.png',
                                segments_info=_segments_info(ids, segments, {k: k for k in range(150)})))
        instance_images.append(dict(id=i + 1, file_name=f'{name}.jpg', height=size[0], width=size[1]))
        things = [s for s in segments if s[1] in ADE150_THING_INDICES]
        instances += instance_annotations(ids, things, i + 1, start_id=len(instances) + 1)
    _write_json(root / 'ade20k_panoptic_val.json', images, annotations, categories)
    _write_json(root / 'ade20k_instance_val.json', instance_images, instances,
                [dict(id=c['id'], name=c['name']) for c in categories if c['isthing']])
    return str(root)


CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def make_cityscapes_panoptic_layout(root, num_images: int = 2, size: Tuple[int, int] = (48, 96),
                                    seed: int = 0) -> str:
    """``root`` = data/cityscapes with val images, labelTrainIds maps and createPanopticImgs' output.

    Category ids are Cityscapes label ids (createPanopticImgs without ``--use-train-id``); a crowd
    of cars mirrors a 'car group'. Scenes: 'road' and 'sky' bands, 'car' and 'person' boxes.
    Returns ``root``.
    """
    names = load_vocabulary('cityscapes19').names
    categories = [dict(id=i, name=n, isthing=int(k >= 11))  # person .. bicycle are things
                  for k, (i, n) in enumerate(zip(CITYSCAPES_LABEL_IDS, names))]
    root, rng = Path(root), np.random.default_rng(seed)
    pan_dir = root / 'gtFine' / 'cityscapes_panoptic_val'
    pan_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        classes, ids, segments = _scene(rng, size, [10, 0], [13, 11], crowd=True)
        city = ('frankfurt', 'lindau')[i % 2]
        name = f'{city}_{i:06d}_000019'
        for sub in (f'leftImg8bit/val/{city}', f'gtFine/val/{city}'):
            (root / sub).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(_image(rng, classes, 19))
        image.save(root / f'leftImg8bit/val/{city}/{name}_leftImg8bit.png')
        train_ids = np.where(classes < 0, 255, classes).astype(np.uint8)
        Image.fromarray(train_ids).save(root / f'gtFine/val/{city}/{name}_gtFine_labelTrainIds.png')
        Image.fromarray(id_to_rgb(ids)).save(pan_dir / f'{name}_gtFine_panoptic.png')
        images.append(dict(id=name, file_name=f'{name}_leftImg8bit.png', height=size[0], width=size[1]))
        segments_info = _segments_info(ids, segments, dict(enumerate(CITYSCAPES_LABEL_IDS)))
        annotations.append(dict(image_id=name, file_name=f'{name}_gtFine_panoptic.png',
                                segments_info=segments_info))
    _write_json(root / 'gtFine' / 'cityscapes_panoptic_val.json', images, annotations, categories)
    return str(root)

