"""Unlabelled image folders (e.g. ImageNet ``train/``) for self-supervised / distillation training.

CLIP-DINOiser trains on 1,000 ImageNet images with no labels: any folder of images works. This module
holds the dataset and the one augmentation mmcv-lite and mmseg lack for its recipe (torchvision's
``ColorJitter(0.5)``, i.e. a random brightness factor).
"""
import os
import os.path as osp

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset

from ovseg.registry import DATASETS, TRANSFORMS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')


def list_images(folder, extensions=IMG_EXTENSIONS):
    """Sorted paths of every image under ``folder``, recursively (hidden files and folders skipped).

    Args:
        folder (str): root folder; a flat folder of images or a class-folder tree (ImageNet style).
        extensions (Sequence[str]): accepted suffixes, compared case-insensitively ('.JPEG' matches).

    Returns:
        list[str]: paths sorted by their path relative to ``folder`` (stable across machines).
    """
    suffixes = tuple(e.lower() for e in extensions)
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith('.')]  # e.g. .ipynb_checkpoints, .git
        found += [osp.join(root, f) for f in files if not f.startswith('.') and f.lower().endswith(suffixes)]
    return sorted(found, key=lambda p: osp.relpath(p, folder))


@DATASETS.register_module()
class ImageFolderDataset(BaseDataset):
    """Every image under a folder, recursively, without labels.

    Data infos hold ``img_path`` (plus an empty ``seg_fields`` so mmseg's transforms run unchanged), and
    ``PackSegInputs`` gives ``SegDataSample``s without ground truth.

    Args:
        data_root (str): root joined with ``data_prefix['img_path']``.
        data_prefix (dict): ``img_path``: the image folder (relative to ``data_root`` or absolute).
            Default ``dict(img_path='')`` (``data_root`` itself).
        max_images (int, optional): keep at most this many images (1000 in CLIP-DINOiser). Default all.
        sample (str): how ``max_images`` picks: 'first' (the first N in sorted order) or 'random' (N drawn
            without replacement with ``seed``, then sorted). Use 'random' for class-folder trees: the first
            1,000 ImageNet images are all one class. Default 'first'.
        seed (int): seed of the 'random' pick (independent of the run's seed, so the subset is fixed).
        extensions (Sequence[str]): image suffixes. Default: common image formats.
        **kwargs: ``pipeline``, ``serialize_data``, ``lazy_init``, ... of mmengine's ``BaseDataset``.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image (the message names it).
    """

    METAINFO = dict(classes=())

    def __init__(self, data_root='', data_prefix=dict(img_path=''), max_images=None, sample='first', seed=0,
                 extensions=IMG_EXTENSIONS, **kwargs):
        if sample not in ('first', 'random'):
            raise ValueError(f"sample must be 'first' or 'random', got {sample!r}")
        if max_images is not None and int(max_images) < 1:
            raise ValueError(f'max_images must be positive, got {max_images}')
        self.max_images = None if max_images is None else int(max_images)
        self.sample = sample
        self.seed = int(seed)
        self.extensions = tuple(extensions)
        super().__init__(data_root=data_root, data_prefix=dict(data_prefix), **kwargs)

    def _pick(self, paths):
        if self.max_images is None or self.max_images >= len(paths):
            return paths
        if self.sample == 'first':
            return paths[:self.max_images]
        keep = np.random.default_rng(self.seed).choice(len(paths), self.max_images, replace=False)
        return [paths[i] for i in sorted(keep)]

    def load_data_list(self):
        """List the images (after the ``max_images`` pick) as data infos."""
        folder = self.data_prefix.get('img_path', '') or self.data_root
        if not folder or not osp.isdir(folder):
            raise FileNotFoundError(f'ImageFolderDataset: image folder not found: {folder!r} (data_root='
                                    f'{self.data_root!r}, data_prefix={self.data_prefix!r}).')
        paths = list_images(folder, self.extensions)
        if not paths:
            raise FileNotFoundError(f'ImageFolderDataset: no image ({", ".join(self.extensions)}) found '
                                    f'under {folder!r}.')
        return [dict(img_path=p, seg_fields=[], reduce_zero_label=False) for p in self._pick(paths)]


@TRANSFORMS.register_module()
class BrightnessJitter(BaseTransform):
    """Multiply the image by a random factor in [1 - strength, 1 + strength] and clip to the pixel range.

    Equals torchvision's ``ColorJitter(brightness=strength)`` (which is what CLIP-DINOiser's
    ``ColorJitter(0.5)`` does), on uint8 images (rounded) or float images in 0-255.

    Args:
        strength (float): 0 <= strength; the factor is drawn from [max(0, 1 - strength), 1 + strength].
            Default 0.5.
        prob (float): probability of applying it. Default 1.0.
    """

    def __init__(self, strength=0.5, prob=1.0):
        super().__init__()
        if strength < 0 or not 0 <= prob <= 1:
            raise ValueError(f'need strength >= 0 and 0 <= prob <= 1, got {strength}, {prob}')
        self.strength = float(strength)
        self.prob = float(prob)

    def transform(self, results):
        if np.random.rand() >= self.prob:
            return results
        factor = np.random.uniform(max(0.0, 1.0 - self.strength), 1.0 + self.strength)
        img = results['img']
        out = np.clip(img.astype(np.float32) * factor, 0, 255)
        results['img'] = np.round(out).astype(img.dtype) if img.dtype == np.uint8 else out.astype(img.dtype)
        return results

    def __repr__(self):
        return f'{type(self).__name__}(strength={self.strength}, prob={self.prob})'
