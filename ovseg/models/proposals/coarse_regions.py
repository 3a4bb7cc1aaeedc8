"""Connected regions of a coarse class map and the SAM prompts they give (Trident's refinement input).

All region work happens at ``1 / down_ratio`` resolution, as in Trident: the prediction is downsampled by
nearest neighbour and the probabilities bilinearly (``align_corners=False``).
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class CoarseRegions:
    """The prompted regions of one coarse map, in the order they are prompted (class, then label).

    Attributes:
        pred_down (Tensor): (dh, dw) int64 prediction; C marks pixels whose top probability is below the
            coarse threshold (never prompted).
        probs_down (Tensor): (C, dh, dw) float32 probabilities.
        index_map (Tensor): (C, dh, dw) int64; value j + 1 marks the j-th prompted region of that class
            (components in label order, after the area filter), 0 elsewhere.
        classes (Tensor): (R,) int64 class of each prompted region.
        labels (Tensor): (R,) int64 value of each region in ``index_map[class]`` (1, 2, ... per class).
        areas (Tensor): (R,) int64 pixel counts at (dh, dw).
        boxes (Tensor): (R, 4) float32 tight xyxy boxes (inclusive pixel indices) at (dh, dw).
        points (Tensor): (R, 2) int64 xy of the region's highest class probability (first in row-major
            order on ties).
        mean_probs (Tensor): (R,) float32 mean class probability inside the region.
    """

    pred_down: torch.Tensor
    probs_down: torch.Tensor
    index_map: torch.Tensor
    classes: torch.Tensor
    labels: torch.Tensor
    areas: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor
    mean_probs: torch.Tensor

    def __len__(self):
        return int(self.classes.numel())

    @property
    def down_size(self):
        return tuple(self.pred_down.shape)

    def masks(self, index=None):
        """(R', dh, dw) bool masks of the regions selected by ``index`` (all by default)."""
        classes, labels = (self.classes, self.labels) if index is None else \
            (self.classes[index], self.labels[index])
        return self.index_map[classes] == labels[:, None, None]


def downsample(seg_pred, probs, down_ratio=2):
    """(H, W) prediction and (C, H, W) probabilities -> (dh, dw) nearest and (C, dh, dw) bilinear."""
    height, width = seg_pred.shape[-2:]
    size = (height // down_ratio, width // down_ratio)
    if min(size) < 1:
        raise ValueError(f'A {height}x{width} map is too small for down_ratio {down_ratio}.')
    # float32 holds class indices exactly (Trident casts to fp16, exact below 2048 classes)
    pred = F.interpolate(seg_pred.reshape(1, 1, height, width).float(), size, mode='nearest')
    probs_down = F.interpolate(probs[None].float(), size, mode='bilinear', align_corners=False)
    return pred[0, 0].long(), probs_down[0]


def find_coarse_regions(seg_pred, probs, coarse_thresh=0.1, minimal_area=225, down_ratio=2):
    """Connected components of every confident class of a coarse map.

    A class with maximum (downsampled) probability below ``coarse_thresh`` gives no region; pixels whose
    top probability is below it belong to no class. Components are 8-connected and those with fewer
    than ``minimal_area`` pixels (counted at the downsampled resolution) are dropped.

    Args:
        seg_pred (Tensor): (H, W) or (1, H, W) integer prediction.
        probs (Tensor): (C, H, W) class probabilities.
        coarse_thresh (float): confidence threshold (0.1 in Trident's model default). Default 0.1.
        minimal_area (int): smallest component, in downsampled pixels. Default 225.
        down_ratio (int): downsampling factor. Default 2.

    Returns:
        CoarseRegions
    """
    num_classes = probs.shape[0]
    pred_down, probs_down = downsample(seg_pred, probs, down_ratio)
    if coarse_thresh > 0:
        pred_down = pred_down.masked_fill(probs_down.amax(dim=0) < coarse_thresh, num_classes)
    pred_np = pred_down.cpu().numpy()
    index_map = np.zeros((num_classes,) + pred_np.shape, dtype=np.int64)
    found = []
    for cls in range(num_classes):
        if probs_down[cls].max() < coarse_thresh:
            continue
        labelled, count = ndimage.label(pred_np == cls, structure=EIGHT_CONNECTED)
        regions = _class_regions(cls, labelled, count, probs_down[cls], minimal_area)
        renumber = np.zeros(count + 1, dtype=np.int64)
        renumber[[r[1] for r in regions]] = np.arange(1, len(regions) + 1)
        index_map[cls] = renumber[labelled]
        found += [(c, j, *rest) for j, (c, _, *rest) in enumerate(regions, start=1)]
    return _pack_regions(found, pred_down, probs_down, torch.from_numpy(index_map))


def _class_regions(cls, labelled, count, class_probs, minimal_area):
    """Region tuples (class, label, area, box, point, mean) of one class, in label order."""
    regions = []
    slices = ndimage.find_objects(labelled, count)
    areas = np.bincount(labelled.ravel(), minlength=count + 1)
    for label, sl in enumerate(slices, start=1):
        if sl is None or areas[label] < minimal_area:
            continue
        inside = torch.from_numpy(labelled[sl] == label)
        window = class_probs[sl]
        mean = window[inside].mean()
        flat = torch.where(inside, window, torch.full_like(window, -float('inf'))).flatten().argmax()
        y = sl[0].start + int(flat) // window.shape[1]
        x = sl[1].start + int(flat) % window.shape[1]
        box = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
        regions.append((cls, label, int(areas[label]), box, (x, y), mean))
    return regions


def _pack_regions(found, pred_down, probs_down, index_map):
    def column(i, dtype):
        return torch.tensor([r[i] for r in found], dtype=dtype)

    return CoarseRegions(
        pred_down=pred_down, probs_down=probs_down, index_map=index_map,
        classes=column(0, torch.int64), labels=column(1, torch.int64), areas=column(2, torch.int64),
        boxes=column(3, torch.float32).reshape(-1, 4), points=column(4, torch.int64).reshape(-1, 2),
        mean_probs=torch.stack([r[5] for r in found]) if found else torch.zeros(0))


@dataclass
class RegionPrompts:
    """SAM prompts of the regions (one prompt per region) in SAM's input frame.

    Attributes:
        boxes (Tensor): (R, 4) float32 xyxy.
        points (Tensor): (R, 1, 2) float32 xy.
        point_labels (Tensor): (R, 1) float32 ones.
        class_order (Tensor): (G,) int64 classes with at least one region, ascending.
        mask_inputs (Tensor): (G, 1, m, m) float32 low-resolution mask prompts, one per class in
            ``class_order`` (m = SAM's mask input side, 256 at image size 1024).
        mask_index (Tensor): (R,) int64 row of ``mask_inputs`` used by each region.
    """

    boxes: torch.Tensor
    points: torch.Tensor
    point_labels: torch.Tensor
    class_order: torch.Tensor
    mask_inputs: torch.Tensor
    mask_index: torch.Tensor


def preprocess_shape(height, width, long_side):
    """(h, w) after resizing the long side to ``long_side`` (SAM's ResizeLongestSide rounding)."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def frame_shape(height, width, side, square=False):
    """(h, w) of an (height, width) image inside a model's ``side`` x ``side`` input: resized along its
    long side and padded (SAM), or stretched to the square (``square``: SAM 2)."""
    return (side, side) if square else preprocess_shape(height, width, side)


def _to_frame(xy, size, long_side, square=False):
    new_h, new_w = frame_shape(size[0], size[1], long_side, square)
    return xy.float() * torch.tensor([new_w / size[1], new_h / size[0]], dtype=torch.float32)


def build_region_prompts(regions, image_size, sam_input_size=1024, mask_input_size=256,
                         coarse_thresh=0.1, mask_coeff=0.005, square=False):
    """Box, point and class mask prompts of every region (Trident's prompt construction).

    Boxes and points are scaled from the downsampled frame to SAM's input frame. Each class has one
    mask prompt: its downsampled probability resized bilinearly so that its long side is
    ``mask_input_size``, zero-padded bottom/right to a square, multiplied by ``mask_coeff`` where above
    ``coarse_thresh`` and 0 elsewhere. With ``square`` (SAM 2, whose input is the image stretched to a
    square) the frame is the square itself and the mask prompt is resized to it, without padding.

    Args:
        regions (CoarseRegions): from :func:`find_coarse_regions`.
        image_size (tuple[int, int]): (H, W) of the full-resolution map (and of SAM's image).
        sam_input_size (int): SAM's encoder input side. Default 1024.
        mask_input_size (int): side of SAM's mask prompt. Default 256.
        coarse_thresh (float): threshold applied to the mask prompt. Default 0.1.
        mask_coeff (float): mask prompt scale (``sam_mask_coff``). Default 0.005.
        square (bool): the model's input is the image stretched to a square (SAM 2). Default False.

    Returns:
        RegionPrompts
    """
    down = regions.down_size
    boxes = _to_frame(regions.boxes.reshape(-1, 2, 2), down, sam_input_size, square).reshape(-1, 4)
    points = _to_frame(regions.points, down, sam_input_size, square)[:, None]
    class_order, mask_index = torch.unique(regions.classes, sorted=True, return_inverse=True)
    new_h, new_w = frame_shape(image_size[0], image_size[1], mask_input_size, square)
    masks = F.interpolate(regions.probs_down[class_order][:, None], (new_h, new_w), mode='bilinear',
                          align_corners=False)
    masks = F.pad(masks, (0, mask_input_size - new_w, 0, mask_input_size - new_h))
    masks = torch.where(masks > coarse_thresh, mask_coeff * masks, torch.zeros_like(masks))
    return RegionPrompts(boxes=boxes, points=points, point_labels=torch.ones(len(regions), 1),
                         class_order=class_order, mask_inputs=masks, mask_index=mask_index)


def region_prompt_summary(prompts: RegionPrompts) -> Tuple[int, ...]:
    """Number of regions per class of ``prompts.class_order`` (Trident's per-class batch sizes)."""
    return tuple(torch.bincount(prompts.mask_index, minlength=len(prompts.class_order)).tolist())
