"""What every SAM backend shares: pixel-prompt checks and batched prompt decoding on one image embedding.

A backend (``SAMPredictor`` for segment-anything, ``SAM2Predictor`` for SAM 2 through transformers)
implements ``embed_image``, ``to_input_frame``, ``encode_masks``, ``dense_pe``, ``decode``, ``grid_masks``
and ``upsample``, and the attributes ``image_size``, ``mask_input_size``, ``mask_threshold``,
``square_input`` and ``device``. Everything above it (automatic proposals, Trident-style refinement,
click/box prompts) is written against this interface only, so the backend is a config choice.
"""
import numpy as np
import torch
import torch.nn as nn


def as_prompt_tensor(value, device, dtype=None):
    """None stays None; arrays become ``dtype`` tensors (float64 for coordinates, as SamPredictor
    scales numpy prompts in float64); tensors keep their dtype unless one is given."""
    if value is None:
        return None
    if not torch.is_tensor(value):
        value = torch.as_tensor(np.asarray(value), dtype=dtype or torch.float64)
    elif dtype is not None:
        value = value.to(dtype)
    return value.to(device)


def num_prompts(points, labels, boxes):
    """Number of prompts N of (N, P, 2) points / (N, P) labels / (N, 4) boxes; shape errors named."""
    if points is None and boxes is None:
        raise ValueError('Give at least one prompt: points (N, P, 2) and labels (N, P), or boxes (N, 4).')
    if points is not None:
        if points.dim() != 3 or points.shape[-1] != 2:
            raise ValueError(f'points must be (N, P, 2), got {tuple(points.shape)}.')
        if labels is None or tuple(labels.shape) != tuple(points.shape[:2]):
            raise ValueError(f'point_labels must be (N, P) = {tuple(points.shape[:2])}, got '
                             f'{None if labels is None else tuple(labels.shape)}.')
    if boxes is not None and (boxes.dim() != 2 or boxes.shape[-1] != 4):
        raise ValueError(f'boxes must be (N, 4), got {tuple(boxes.shape)}.')
    if points is not None and boxes is not None and points.shape[0] != boxes.shape[0]:
        raise ValueError(f'{points.shape[0]} point prompts but {boxes.shape[0]} boxes.')
    return points.shape[0] if points is not None else boxes.shape[0]


def check_prompts(points, labels, boxes, size):
    """Validate pixel-frame prompts against an (H, W) image.

    Points (labels other than -1, SAM's padding) must lie in ``[0, W] x [0, H]``. Boxes are clipped to the
    image; a box that is empty after clipping (x2 <= x1 or y2 <= y1) is an error.

    Returns:
        Tensor | None: the clipped boxes.

    Raises:
        ValueError: naming the first offending prompt.
    """
    height, width = size
    if points is not None:
        x, y = points[..., 0], points[..., 1]
        outside = ((x < 0) | (x > width) | (y < 0) | (y > height)) & (labels != -1)
        if outside.any():
            n, p = outside.nonzero()[0].tolist()
            raise ValueError(f'Point {points[n, p].tolist()} (prompt {n}) lies outside the {width}x{height} '
                             f'(width x height) image; points are (x, y) pixel coordinates.')
    if boxes is None:
        return None
    limits = boxes.new_tensor([width, height, width, height])
    clipped = torch.minimum(boxes.clamp(min=0), limits)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if empty.any():
        n = int(empty.nonzero()[0])
        raise ValueError(f'Box {boxes[n].tolist()} (prompt {n}) is empty inside the {width}x{height} image; '
                         f'boxes are (x1, y1, x2, y2) pixels with x1 < x2 and y1 < y2.')
    return clipped


class PromptPredictor(nn.Module):
    """Base of the SAM backends: :meth:`predict` batches pixel prompts through the backend's ``decode``."""

    #: the image is resized to a square input (SAM 2) instead of along its long side and padded (SAM)
    square_input = False

    @torch.no_grad()
    def predict(self, image, points=None, point_labels=None, boxes=None, mask_input=None,
                multimask_output=True, batch_size=64, transformed=False):
        """Masks for N prompts, decoded ``batch_size`` prompts at a time on one image embedding.

        Args:
            image: the backend's embedding of one image (from :meth:`embed_image`).
            points (array | Tensor, optional): (N, P, 2) xy pixel coordinates (P points per prompt).
            point_labels (array | Tensor, optional): (N, P), 1 = positive, 0 = negative.
            boxes (array | Tensor, optional): (N, 4) xyxy pixel boxes.
            mask_input (Tensor, optional): (N, 1, m, m) or (1, 1, m, m) (shared) low-res logits
                (m = ``mask_input_size``).
            multimask_output (bool): three masks per prompt. Default True.
            batch_size (int): prompts per decoder call. Default 64.
            transformed (bool): coordinates are already in the model's input frame (not checked).

        Returns:
            SAMMasks: (N, M, m, m) logits and (N, M) predicted IoU.

        Raises:
            ValueError: no prompt, inconsistent shapes, a point outside the image or an empty box (see
                :func:`check_prompts`).
        """
        device = self.device
        points, boxes = as_prompt_tensor(points, device), as_prompt_tensor(boxes, device)
        labels = as_prompt_tensor(point_labels, device, torch.int64)
        num = num_prompts(points, labels, boxes)
        if not transformed:
            boxes = check_prompts(points, labels, boxes, image.original_size)
            points = None if points is None else self.to_input_frame(points, image.original_size)
            boxes = None if boxes is None else self.to_input_frame(
                boxes.reshape(-1, 2, 2), image.original_size).reshape(-1, 4)
        dense = None if mask_input is None else self.encode_masks(mask_input.to(device, torch.float32))
        image_pe = self.dense_pe()
        outs = []
        for start in range(0, num, batch_size):
            sl = slice(start, start + batch_size)
            outs.append(self.decode(
                image, None if points is None else points[sl], None if labels is None else labels[sl],
                None if boxes is None else boxes[sl].float(),
                None if dense is None else (dense if dense.shape[0] == 1 else dense[sl]),
                multimask_output, image_pe))
        return type(outs[0])(low_res_logits=torch.cat([o.low_res_logits for o in outs]),
                             iou=torch.cat([o.iou for o in outs]))
