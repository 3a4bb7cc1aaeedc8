"""Convert COCO-Stuff 164k stuffthingmaps into COCO-Object label maps (background + 80 things).

Raw layout expected (the COCO 2017 images and ``stuffthingmaps_trainval2017.zip`` of cocostuff,
i.e. the same input as mmseg's ``coco_stuff164k`` converter)::

    ROOT/                                  # e.g. data/coco_stuff164k
      images/{train2017,val2017}/*.jpg
      annotations/{train2017,val2017}/*.png
          # stuffthingmaps: 8-bit grayscale PNG, value = COCO category id - 1
          # (things 0..89 with the 10 unused ids skipped, stuff 91..181), 255 = unlabeled

Output, beside the input (files whose name contains 'TrainIds' are never read)::

      annotations/{train2017,val2017}/<name>_instanceTrainIds.png
          # 8-bit: 0 = background, 1..80 = the thing classes in COCO category order

The mapping is that of GroupViT's ``convert_coco_object.py``, whose output SCLIP, ClearCLIP,
CLIP-DINOiser and ProxyCLIP evaluate: a thing keeps its rank among the 80 thing ids (plus one), and
every stuff class **and the unlabeled value 255** become background 0. A value that is no COCO
category raises an error naming the file.

Usage::

    python tools/dataset_converters/coco_object.py data/coco_stuff164k \
        [--splits val2017] [--nproc 8]
"""
import argparse
import os
import os.path as osp
from functools import partial
from typing import List, Optional, Sequence

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

# COCO thing category ids (1-based) in category order; their rank + 1 is the COCO-Object label.
THING_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
             27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
             52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
             78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)
STUFF_VALUES = range(91, 182)  # stuffthingmap values of the 91 stuff classes (ids 92..182)
UNLABELED = 255
OUTPUT_SUFFIX = '_instanceTrainIds.png'
INVALID = -1


def build_lut() -> np.ndarray:
    """Lookup table stuffthingmap value -> COCO-Object label; INVALID for values no category has."""
    lut = np.full(256, INVALID, dtype=np.int16)
    for rank, cat_id in enumerate(THING_IDS):
        lut[cat_id - 1] = rank + 1
    lut[list(STUFF_VALUES)] = 0
    lut[UNLABELED] = 0
    return lut


def convert_file(src: str, lut: np.ndarray) -> str:
    """Convert one stuffthingmap next to itself.

    Args:
        src (str): the stuffthingmap PNG.
        lut (np.ndarray): table from :func:`build_lut`.

    Returns:
        str: the written ``*_instanceTrainIds.png``.

    Raises:
        ValueError: the map is not 8-bit single-channel or holds a value that is no COCO category.
    """
    label = np.array(Image.open(src))
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(
            f'{src}: expected an 8-bit single-channel stuffthingmap, got {label.dtype} '
            f'{label.shape}')
    out = lut[label]
    if (out == INVALID).any():
        bad = np.unique(label[out == INVALID]).tolist()
        raise ValueError(f'{src}: values {bad} are no COCO category (expected 0..181 or 255)')
    dst = src[:-len('.png')] + OUTPUT_SUFFIX
    Image.fromarray(out.astype(np.uint8)).save(dst)
    return dst


def list_maps(root: str, split: str) -> List[str]:
    """The raw stuffthingmaps of ``split``, sorted; raise if the folder is missing or empty."""
    folder = osp.join(root, 'annotations', split)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder} not found: extract stuffthingmaps_trainval2017.zip into '
                                f'{osp.join(root, "annotations")}')
    files = sorted(osp.join(folder, f) for f in os.listdir(folder)
                   if f.endswith('.png') and 'TrainIds' not in f)
    if not files:
        raise FileNotFoundError(f'no stuffthingmap PNG in {folder}')
    return files


def convert(root: str, splits: Sequence[str] = ('train2017', 'val2017'), nproc: int = 1) -> int:
    """Convert every split; returns the number of written files."""
    lut = build_lut()
    total = 0
    for split in splits:
        files = list_maps(root, split)
        worker = partial(convert_file, lut=lut)
        if nproc > 1:
            track_parallel_progress(worker, files, nproc)
        else:
            track_progress(worker, files)
        total += len(files)
    return total


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='COCO-Stuff 164k root (holds images/ and annotations/)')
    parser.add_argument('--splits', nargs='+', default=['train2017', 'val2017'])
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = parser.parse_args(argv)
    count = convert(args.root, args.splits, args.nproc)
    print(f'wrote {count} COCO-Object label maps (*{OUTPUT_SUFFIX}) under {args.root}/annotations')


if __name__ == '__main__':
    main()
