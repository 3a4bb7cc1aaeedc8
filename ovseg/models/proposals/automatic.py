"""Automatic SAM mask proposals from a point grid, computed as ``SamAutomaticMaskGenerator`` does, faster.

Same prompts, thresholds, stability score, boxes and NMS as segment-anything's generator (single crop
layer), hence the same masks in the same order, with less work per batch:

* the mask decoder runs on one copy of the image tokens for the whole batch
  (:mod:`~ovseg.models.proposals.shared_decoder`) and upscales only the points with a mask above
  ``pred_iou_thresh`` (the IoU head does not depend on the upscaling);
* masks are filtered by predicted IoU on the 256x256 logits, before upsampling (the stock generator
  upsamples all 3 x ``points_per_batch`` masks to the image size first);
* kept masks are upsampled ``upsample_batch`` at a time and stored bit-packed until NMS (8 pixels a
  byte, no run-length encoding and decoding, no float copies of rejected masks);
* the dense positional encoding is computed once per image and the image embedding once per image.

The SAM 2 backend (:class:`~ovseg.models.proposals.sam2.SAM2Predictor`) runs the same algorithm with the
same thresholds; its ``grid_masks`` decodes every point with transformers' mask decoder and drops the
masks below the IoU threshold before they are upsampled (the same masks as upsampling all of them first,
as transformers' and SAM 2's own generators do, with less work).
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ovseg.registry import MODELS


@dataclass
class MaskProposals:
    """Class-agnostic masks of one image, ordered as the stock generator orders them (NMS score).

    Attributes:
        masks (Tensor): (N, H, W) bool (bit-packed (N, H, ceil(W / 8)) uint8 inside the generator, until
            NMS has chosen the masks to return).
        iou (Tensor): (N,) predicted IoU.
        stability (Tensor): (N,) stability score.
        boxes (Tensor): (N, 4) int64 xyxy boxes of the masks (inclusive pixel indices).
        points (Tensor): (N, 2) float64 xy grid point that prompted each mask.
    """

    masks: torch.Tensor
    iou: torch.Tensor
    stability: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor

    def __len__(self):
        return int(self.iou.numel())

    def stage_count(self):
        """StageTimer's count of this output: ('sam_proposals', number of masks)."""
        return 'sam_proposals', len(self)

    def select(self, index):
        """A new MaskProposals with rows ``index`` (bool mask or indices)."""
        return MaskProposals(*(getattr(self, f)[index] for f in ('masks', 'iou', 'stability', 'boxes',
                                                                  'points')))

    def to_records(self):
        """The stock generator's output format: dicts with 'segmentation', 'bbox' (xywh), 'area', ..."""
        boxes = self.boxes.clone()
        boxes[:, 2:] -= boxes[:, :2]
        return [dict(segmentation=m.cpu().numpy(), area=int(m.sum()), bbox=b.tolist(), predicted_iou=float(i),
                     point_coords=[p.tolist()], stability_score=float(s))
                for m, b, i, s, p in zip(self.masks, boxes, self.iou, self.stability, self.points)]


def point_grid(points_per_side):
    """(n * n, 2) float64 grid of cell centres in [0, 1]^2, rows first (segment-anything's grid)."""
    from segment_anything.utils.amg import build_point_grid
    return build_point_grid(points_per_side)


BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # numpy.packbits order (first pixel = high bit)


def pack_masks(masks):
    """(N, H, W) bool -> (N, H, ceil(W / 8)) uint8, eight pixels per byte (numpy.packbits layout)."""
    n, h, w = masks.shape
    padded = torch.nn.functional.pad(masks, (0, (-w) % 8)).view(n, h, (w + 7) // 8, 8)
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (padded.to(torch.uint8) * weights).sum(dim=-1, dtype=torch.uint8)


def unpack_masks(packed, width):
    """Inverse of :func:`pack_masks`: (N, H, ceil(W / 8)) uint8 -> (N, H, W) bool."""
    weights = torch.tensor(BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    bits = (packed[..., None] & weights) > 0
    return bits.flatten(-2)[..., :width]


@MODELS.register_module()
class SAMAutomaticProposals(nn.Module):
    """SAM masks for every point of a regular grid, filtered and de-duplicated.

    Args:
        sam (dict | nn.Module): a SAM backend: ``SAMPredictor`` (segment-anything) or ``SAM2Predictor``
            (SAM 2 through transformers), config or module; the algorithm and thresholds are the same.
            Default segment-anything vit_b without weights.
        points_per_side (int): grid side; ``points_per_side ** 2`` point prompts. Default 32.
        points_per_batch (int): point prompts per mask-decoder call (3 masks each). Default 64.
        pred_iou_thresh (float): keep masks whose predicted IoU is above it, in [0, 1]; 0 disables the
            filter. Default 0.88.
        stability_score_thresh (float): keep masks whose stability score (IoU of the masks thresholded at
            +/- ``stability_score_offset``) is at least this, in [0, 1]; 0 disables. Default 0.95.
        stability_score_offset (float): logit offset of the stability score. Default 1.0.
        box_nms_thresh (float): box IoU above which the lower-IoU mask is dropped. Default 0.7.
        min_mask_region_area (int): if > 0, fill holes and remove islands smaller than this (pixels),
            then run NMS again at ``max(box_nms_thresh, 0.7)`` as the stock generator does (needs OpenCV).
            Default 0.
        upsample_batch (int): kept masks upsampled to the image size at a time (memory bound). Default 16.
    """

    def __init__(self, sam=dict(type='SAMPredictor', arch='vit_b'), points_per_side=32, points_per_batch=64,
                 pred_iou_thresh=0.88, stability_score_thresh=0.95, stability_score_offset=1.0,
                 box_nms_thresh=0.7, min_mask_region_area=0, upsample_batch=16):
        super().__init__()
        self.sam = MODELS.build(sam) if isinstance(sam, dict) else sam
        if points_per_side < 1 or points_per_batch < 1 or upsample_batch < 1:
            raise ValueError('points_per_side, points_per_batch and upsample_batch must be positive.')
        self.points_per_side = int(points_per_side)
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.min_mask_region_area = int(min_mask_region_area)
        self.upsample_batch = int(upsample_batch)

    @torch.no_grad()
    def forward(self, image, sam_image=None):
        """Proposals of one image.

        Args:
            image (np.ndarray | Tensor): (H, W, 3) uint8 RGB.
            sam_image (SAMImage, optional): a precomputed embedding of ``image``.

        Returns:
            MaskProposals
        """
        from torchvision.ops import batched_nms
        sam_image = self.sam.embed_image(image) if sam_image is None else sam_image
        height, width = sam_image.original_size
        points = point_grid(self.points_per_side) * np.array([[width, height]])
        image_pe = self.sam.dense_pe()
        parts = [self._process_batch(sam_image, points[i:i + self.points_per_batch], image_pe)
                 for i in range(0, len(points), self.points_per_batch)]
        out = MaskProposals(*(torch.cat([getattr(p, f) for p in parts])
                              for f in ('masks', 'iou', 'stability', 'boxes', 'points')))
        keep = batched_nms(out.boxes.float(), out.iou, torch.zeros_like(out.iou), self.box_nms_thresh)
        out = out.select(keep)
        out.masks = unpack_masks(out.masks, width)
        if self.min_mask_region_area > 0 and len(out):
            out = self._remove_small_regions(out)
        return out

    def _process_batch(self, sam_image, points, image_pe):
        """One batch of grid points -> the masks passing the IoU and stability filters (bit-packed)."""
        from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score
        device = self.sam.device
        coords = self.sam.to_input_frame(torch.as_tensor(points, device=device), sam_image.original_size)
        # the backend keeps the masks above pred_iou_thresh (segment-anything: upscaling only those)
        iou, rows, low_res = self.sam.grid_masks(sam_image, coords, self.pred_iou_thresh, image_pe)
        height, width = sam_image.original_size
        kept = dict(rows=[], masks=[pack_masks(torch.zeros(0, height, width, dtype=torch.bool))],
                    stability=[iou.new_zeros(0)], boxes=[torch.zeros(0, 4, dtype=torch.long)])
        for chunk_rows, chunk in zip(rows.split(self.upsample_batch), low_res.split(self.upsample_batch)):
            logits = self.sam.upsample(chunk[:, None], sam_image)[:, 0]
            stability = calculate_stability_score(logits, self.sam.mask_threshold,
                                                  self.stability_score_offset)
            keep = stability >= self.stability_score_thresh if self.stability_score_thresh > 0.0 else \
                torch.ones_like(stability, dtype=torch.bool)
            masks = logits[keep] > self.sam.mask_threshold
            kept['rows'].append(chunk_rows[keep])
            kept['stability'].append(stability[keep])
            kept['boxes'].append(batched_mask_to_box(masks).long().cpu())
            kept['masks'].append(pack_masks(masks).cpu())
        rows = torch.cat(kept['rows']) if kept['rows'] else rows[:0]
        point_rows = torch.as_tensor(points).repeat_interleave(3, dim=0)[rows.cpu()]
        return MaskProposals(masks=torch.cat(kept['masks']), iou=iou[rows].cpu(),
                             stability=torch.cat(kept['stability']).cpu(), boxes=torch.cat(kept['boxes']),
                             points=point_rows)

    def _remove_small_regions(self, proposals):
        """Stock post-processing: fill small holes, drop small islands, NMS preferring unchanged masks."""
        from segment_anything.utils.amg import batched_mask_to_box, remove_small_regions
        from torchvision.ops import batched_nms
        masks, unchanged = [], []
        for mask in proposals.masks.cpu().numpy():
            mask, holes = remove_small_regions(mask, self.min_mask_region_area, mode='holes')
            mask, islands = remove_small_regions(mask, self.min_mask_region_area, mode='islands')
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (holes or islands)))
        masks = torch.stack(masks).to(proposals.masks.device)
        boxes = batched_mask_to_box(masks)
        scores = torch.as_tensor(unchanged)
        keep = batched_nms(boxes.float(), scores, torch.zeros_like(scores), max(self.box_nms_thresh, 0.7))
        changed = scores == 0
        changed = changed.to(masks.device)
        proposals = MaskProposals(torch.where(changed[:, None, None], masks, proposals.masks),
                                  proposals.iou, proposals.stability,
                                  torch.where(changed[:, None], boxes, proposals.boxes), proposals.points)
        return proposals.select(keep)
