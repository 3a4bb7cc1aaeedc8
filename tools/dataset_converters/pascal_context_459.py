"""Convert the Pascal Context ``.mat`` annotations into PC-459 (all 459 classes) label maps.

Raw layout expected (VOC 2010 ``VOCtrainval_03-May-2010.tar`` plus the Pascal Context
``trainval.tar.gz`` from https://www.cs.stanford.edu/~roozbeh/pascal-context/, extracted into
VOC2010)::

    ROOT/                                  # VOCdevkit/VOC2010
      JPEGImages/<name>.jpg
      ImageSets/Main/{train,val}.txt       # the Pascal Context splits: 4998 / 5105 names
      trainval/<name>.mat                  # MATLAB file, variable 'LabelMap': uint16 (H, W),
                                           #   0 = unlabeled, 1..459 = the ids of labels.txt
      labels.txt                           # optional check: lines '<id>: <name>', ids 1..459

Output (the encoding of detectron2's ``annotations_ctx459``: ODISE / FC-CLIP
``prepare_pascal_ctx_full_sem_seg.py``)::

      SegmentationClassContext459/<name>.tif
          # uint16 TIFF: label id - 1 (0..458), 65535 = unlabeled

Only the images of the requested splits are converted; a listed image without its ``.mat`` file, or
a label value above 459, raises an error naming the file.

Usage::

    python tools/dataset_converters/pascal_context_459.py data/VOCdevkit/VOC2010 [--splits val]
"""
import argparse
import os.path as osp
import re
from functools import partial
from typing import List, Optional, Sequence

import numpy as np
from mmengine.utils import mkdir_or_exist, track_parallel_progress, track_progress
from PIL import Image
from scipy.io import loadmat

NUM_CLASSES = 459
IGNORE_INDEX = 65535
OUT_DIR = 'SegmentationClassContext459'


def check_labels_file(path: str) -> None:
    """Check that ``labels.txt`` lists exactly the ids 1..459 ('<id>: <name>' lines)."""
    ids = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            match = re.match(r'\s*(\d+)\s*:', line)
            if match:
                ids.append(int(match.group(1)))
    if ids != list(range(1, NUM_CLASSES + 1)):
        raise ValueError(f'{path}: expected ids 1..{NUM_CLASSES} in order, got {len(ids)} ids '
                         f'({ids[:3]}...); is this the Pascal Context labels.txt?')


def convert_mat(name: str, root: str) -> str:
    """Convert ``trainval/<name>.mat``; returns the written TIFF path."""
    mat_path = osp.join(root, 'trainval', f'{name}.mat')
    if not osp.isfile(mat_path):
        raise FileNotFoundError(f'{mat_path} not found: extract the Pascal Context trainval.tar.gz '
                                f'into {root}')
    label = loadmat(mat_path)['LabelMap']
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f'{mat_path}: LabelMap should be an integer (H, W) map, got {label.dtype} '
                         f'{label.shape}')
    if label.max() > NUM_CLASSES or label.min() < 0:
        bad = np.unique(label[(label > NUM_CLASSES) | (label < 0)]).tolist()
        raise ValueError(f'{mat_path}: label values {bad[:10]} are outside 0..{NUM_CLASSES}')
    label = label.astype(np.int64)
    out = np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.uint16)
    dst = osp.join(root, OUT_DIR, f'{name}.tif')
    Image.fromarray(out).save(dst)
    return dst


def read_split(root: str, split: str) -> List[str]:
    """Image names of ``ImageSets/Main/<split>.txt``."""
    path = osp.join(root, 'ImageSets', 'Main', f'{split}.txt')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found: ROOT must be VOCdevkit/VOC2010 of '
                                'VOCtrainval_03-May-2010.tar')
    with open(path, encoding='utf-8') as f:
        return [line.split()[0] for line in f if line.strip()]


def convert(root: str, splits: Sequence[str] = ('train', 'val'), nproc: int = 1) -> int:
    """Convert the listed images of every split; returns the number of written files."""
    labels_file = osp.join(root, 'labels.txt')
    if osp.isfile(labels_file):
        check_labels_file(labels_file)
    mkdir_or_exist(osp.join(root, OUT_DIR))
    names = [name for split in splits for name in read_split(root, split)]
    worker = partial(convert_mat, root=root)
    if nproc > 1:
        track_parallel_progress(worker, names, nproc)
    else:
        track_progress(worker, names)
    return len(names)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='VOCdevkit/VOC2010 with trainval/*.mat extracted into it')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = parser.parse_args(argv)
    count = convert(args.root, args.splits, args.nproc)
    print(f'wrote {count} PC-459 label maps into {osp.join(args.root, OUT_DIR)}')


if __name__ == '__main__':
    main()
