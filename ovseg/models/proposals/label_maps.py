"""Mask proposals as one label map per image: CorrCLIP's format, read from disk or made by any generator.

A *label map* is an (H0, W0) integer array at the original image size: its smallest value marks the
pixels no proposal covers, every other value one proposal (proposals do not overlap). This is what
CorrCLIP reads (zdk258/CorrCLIP ``corrclip_segmentor.generate_mask``:
``np.load(<instance_mask_path>/<image stem>.npz)['instance_mask']``) and what its on-the-fly generators
return. Sources, all with ``source(image, meta) -> (H0, W0) int64 tensor``:

- :class:`PrecomputedLabelMaps`: files in that layout (CorrCLIP's released SAM 2 masks, or ones written
  by ``tools/dataset_converters/make_label_maps.py``);
- :class:`GeneratedLabelMaps`: any registered proposal generator returning masks
  (``SAMAutomaticProposals``, :class:`SuperpixelProposals`, ...), painted by
  :func:`proposals_to_label_map`.

:func:`map_correction` is CorrCLIP's last step: every pixel of a proposal takes the proposal's most
frequent predicted class.
"""
import os
from pathlib import Path

import numpy as np
import torch

from ovseg.registry import MODELS


def proposals_to_label_map(masks, height=None, width=None):
    """(N, H, W) bool masks -> (H, W) int64 label map, painted in ascending area order.

    Mask k of the area order gets id k + 1 and overwrites smaller ones where they overlap; 0 is left for
    uncovered pixels. The rule of CorrCLIP's SAM / SAM 2 wrappers (``_anns_to_instance_mask`` in
    zdk258/CorrCLIP ``CorrCLIPv2/mask_generators/factory.py``; stable sort on area).
    """
    masks = torch.as_tensor(masks).bool()
    if masks.dim() != 3:
        if masks.numel() == 0 and height is not None:
            return torch.zeros(height, width, dtype=torch.int64)
        raise ValueError(f'masks must be (N, H, W), got shape {tuple(masks.shape)}')
    out = torch.zeros(masks.shape[1:], dtype=torch.int64)
    areas = masks.flatten(1).sum(dim=1)
    for rank, index in enumerate(torch.sort(areas, stable=True).indices.tolist(), start=1):
        out[masks[index].cpu()] = rank
    return out


def map_correction(pred, label_map):
    """CorrCLIP's map correction: inside every proposal, every pixel takes the proposal's mode.

    The smallest value of ``label_map`` (uncovered pixels) is left alone. Ties go to the smallest class
    id, as ``torch.mode`` on the CPU (the original's call) gives them.

    Args:
        pred (Tensor): (..., H, W) int64 predicted classes.
        label_map (Tensor): (H, W) integer proposals at the same size.

    Returns:
        Tensor: the corrected prediction (same shape).
    """
    if tuple(pred.shape[-2:]) != tuple(label_map.shape):
        raise ValueError(f'prediction {tuple(pred.shape[-2:])} and proposals {tuple(label_map.shape)} differ in size')
    values, region = torch.unique(label_map.to(pred.device), return_inverse=True)
    if values.numel() < 2:
        return pred
    flat = pred.reshape(-1, pred.shape[-2] * pred.shape[-1])
    num_classes = int(flat.max()) + 1
    out = []
    for row in flat:
        counts = torch.bincount(region.flatten() * num_classes + row, minlength=values.numel() * num_classes)
        mode = counts.view(values.numel(), num_classes).argmax(dim=1)
        out.append(torch.where(region.flatten() > 0, mode[region.flatten()], row))
    return torch.stack(out).view_as(pred)


def _stem(meta):
    path = meta.get('img_path')
    if not path:
        raise KeyError('Pre-computed proposals are found by image name: the data sample has no img_path.')
    return Path(path).stem


@MODELS.register_module()
class PrecomputedLabelMaps:
    """Label maps stored as ``<root>/<image stem><suffix>`` (CorrCLIP's layout: ``.npz``, key 'instance_mask').

    Args:
        root (str): folder of the files (e.g. CorrCLIP's released ``region_masks/voc``).
        key (str): array name inside an ``.npz``. Default 'instance_mask'.
        suffix (str): '.npz' (default) or '.npy' / '.png' (a single integer array / image).
    """

    needs_image = False

    def __init__(self, root, key='instance_mask', suffix='.npz'):
        self.root, self.key, self.suffix = str(root), key, suffix

    def path(self, meta):
        return os.path.join(self.root, _stem(meta) + self.suffix)

    def __call__(self, image, meta):
        path = self.path(meta)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'No pre-computed proposals for {meta.get("img_path")}: {path} is missing '
                                    f'(write them with tools/dataset_converters/make_label_maps.py, or use '
                                    f'GeneratedLabelMaps).')
        if self.suffix == '.npz':
            with np.load(path, allow_pickle=False) as data:
                if self.key not in data.files:
                    raise KeyError(f'{path} has no array {self.key!r} (it has {data.files})')
                array = data[self.key]
        elif self.suffix == '.npy':
            array = np.load(path, allow_pickle=False)
        else:
            from PIL import Image
            array = np.asarray(Image.open(path))
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f'{path}: proposals must be a 2-D integer label map, got {array.shape} {array.dtype}')
        ori = tuple(meta.get('ori_shape', array.shape))[:2]
        if tuple(array.shape) != ori:
            raise ValueError(f'{path}: label map {array.shape} does not match the image size {ori}')
        return torch.from_numpy(array.astype(np.int64))


@MODELS.register_module()
class GeneratedLabelMaps:
    """Label maps made on the fly by a registered generator (``SAMAutomaticProposals``, ...).

    Args:
        generator (dict | callable): returns, for an (H, W, 3) uint8 RGB image, an object with ``masks``
            (N, H, W) (``MaskProposals``) or the masks themselves.
    """

    needs_image = True

    def __init__(self, generator=dict(type='SAMAutomaticProposals')):
        self.generator = MODELS.build(generator) if isinstance(generator, dict) else generator

    def __call__(self, image, meta):
        out = self.generator(image)
        masks = getattr(out, 'masks', out)
        return proposals_to_label_map(masks, *image.shape[:2])


@MODELS.register_module()
class SuperpixelProposals:
    """SLIC superpixels as proposals (no weights; CPU smoke tests and a weightless baseline).

    Args:
        n_segments (int): approximate number of superpixels. Default 40.
        compactness (float): SLIC's colour / space trade-off. Default 10.
        sigma (float): Gaussian smoothing before segmentation. Default 1.
        drop_fraction (float): fraction of the smallest segments left unsegmented (id 0), by (area, label).
            Default 0.25 (as the CorrCLIP parity fixtures make their proposals).
    """

    def __init__(self, n_segments=40, compactness=10.0, sigma=1.0, drop_fraction=0.25):
        self.n_segments, self.compactness, self.sigma = int(n_segments), float(compactness), float(sigma)
        self.drop_fraction = float(drop_fraction)

    def __call__(self, image):
        from skimage.segmentation import slic
        seg = slic(np.asarray(image), n_segments=self.n_segments, compactness=self.compactness, sigma=self.sigma,
                   start_label=1, channel_axis=-1)
        labels, areas = np.unique(seg, return_counts=True)
        order = sorted(zip(areas.tolist(), labels.tolist()))
        dropped = {label for _, label in order[:int(self.drop_fraction * len(order))]}
        kept = [label for label in labels.tolist() if label not in dropped]
        return torch.from_numpy(np.stack([seg == label for label in kept]) if kept
                                else np.zeros((0,) + seg.shape, dtype=bool))
