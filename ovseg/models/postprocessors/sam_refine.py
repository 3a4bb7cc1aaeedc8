"""Trident-style SAM refinement of a coarse open-vocabulary class map: the final post-processor of the
class probabilities (``OVSegmentor(sam_refiner=...)``, ``TridentSegmentor``), after any score-map
post-processor (PAMR) and before packing.

Call graph::

    SAMRefiner.refine_and_pack(probs (B, K, H, W), inputs, data_samples, data_preprocessor)  segmentor hook
      resolution='original' (Trident):
      └─ pack_seg_results                   probabilities resized to each image's original size
      └─ original_image(sample)             the image file read again (cv2, RGB), or metainfo ``ori_img``
      └─ refine(image, probs)               one image at its original resolution
      resolution='input':
      └─ forward → images_from_inputs       undo the preprocessor's normalisation -> RGB uint8
      └─ refine(image, probs)               one image at the network input resolution
           └─ prompt_regions(image, probs)
                └─ find_coarse_regions      8-connected components per confident class (half resolution)
                └─ build_region_prompts     box + point + one scaled mask prompt per class
                └─ SAMPredictor.embed_image once per image
                └─ _decode_regions          each class's regions together, ``prompt_batch`` at a time
           └─ merge(result, probs)          IoU threshold ─ merge_refinement: kept masks x probabilities;
                                            rejected regions keep the input
      └─ packing_scores                     (K, H, W) scores whose argmax is the refined prediction
"""
import dataclasses
import os.path as osp
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.structures import PixelData

from ovseg.models.proposals.coarse_regions import (CoarseRegions, RegionPrompts, build_region_prompts,
                                                   find_coarse_regions)
from ovseg.models.proposals.sam import SAMImage
from ovseg.models.utils.input_images import images_from_inputs
from ovseg.models.utils.seg_results import pack_seg_results
from ovseg.registry import MODELS

FAILED_REGION_RULES = ('reference', 'max_prob')
MASK_PROMPT_LAYOUTS = ('trident', 'batched')
RESOLUTIONS = ('original', 'input')


@dataclass
class RefineResult:
    """Refinement of one coarse map.

    Attributes:
        pred (Tensor): (H, W) int64 refined prediction.
        logits (Tensor): (C, H, W) float32 refined scores (Trident's "refined logits": kept-mask
            sigmoid x probability inside kept masks, the input probability inside rejected regions,
            0 elsewhere; the input probabilities when nothing was kept).
        changed (bool): False when no region was kept (``pred``/``logits`` are then the inputs).
        regions (CoarseRegions): the prompted regions.
        prompts (RegionPrompts, optional): their SAM prompts (None without regions).
        iou (Tensor): (R,) predicted IoU of every region's mask.
        low_res_logits (Tensor): (R, 1, m, m) SAM mask logits.
        keep (Tensor): (R,) bool, ``iou > iou_thresh``.
        stage1_logits (Tensor, optional): (C, H, W) scores from kept masks only.
        failed_union (Tensor, optional): (H, W) bool union of the rejected regions (nearest upsampled).
        sam_image (SAMImage, optional): SAM's embedding of the image (None without regions).
    """

    pred: torch.Tensor
    logits: torch.Tensor
    changed: bool
    regions: CoarseRegions
    prompts: Optional[RegionPrompts] = None
    iou: Optional[torch.Tensor] = None
    low_res_logits: Optional[torch.Tensor] = None
    keep: Optional[torch.Tensor] = None
    stage1_logits: Optional[torch.Tensor] = None
    failed_union: Optional[torch.Tensor] = None
    sam_image: Optional[SAMImage] = None

    def stage_count(self):
        """StageTimer's count of this output: ('sam_refine_regions', number of prompted regions)."""
        return 'sam_refine_regions', len(self.regions)


def merge_refinement(mask_logits, classes, probs, seg_pred, failed_union=None, failed_rule='max_prob'):
    """Merge kept SAM masks with the coarse probabilities (Trident's two merge steps).

    Stage 1: per class, the union of its kept masks, scored by the max over those masks of
    ``sigmoid(mask logit) * probs[c]`` (0 outside the union); the prediction is the argmax, or ``seg_pred``
    where every class scores 0. Stage 2: inside rejected regions the scores become
    ``max(stage 1, probs)``. The reference then meant to restore ``seg_pred`` where the input's top
    probability beats the refined one, but compares against the already raised scores, so its prediction
    never changes there (``failed_rule='reference'``); ``'max_prob'`` compares with the stage-1 scores,
    so the prediction follows the raised scores.

    Args:
        mask_logits (Tensor): (N, H, W) full-resolution logits of the kept masks.
        classes (Tensor): (N,) class of each kept mask.
        probs (Tensor): (C, H, W) coarse probabilities.
        seg_pred (Tensor): (H, W) coarse prediction.
        failed_union (Tensor, optional): (H, W) bool union of rejected regions.
        failed_rule (str): 'max_prob' (default) or 'reference'.

    Returns:
        tuple[Tensor, Tensor, Tensor]: refined prediction (H, W), refined scores (C, H, W), stage-1
        scores (C, H, W).
    """
    if failed_rule not in FAILED_REGION_RULES:
        raise ValueError(f'failed_rule must be one of {FAILED_REGION_RULES}, got {failed_rule!r}')
    stage1 = torch.zeros_like(probs)
    for cls in classes.unique().tolist():
        logits = mask_logits[classes == cls]
        score = (logits.sigmoid() * probs[cls]).amax(dim=0)
        stage1[cls] = score * (logits > 0).any(dim=0)
    pred = torch.where(stage1.sum(dim=0) == 0, seg_pred, stage1.argmax(dim=0))
    if failed_union is None or not failed_union.any():
        return pred, stage1, stage1
    raised = torch.maximum(stage1, probs * failed_union)
    if failed_rule == 'max_prob':
        beaten = failed_union & (probs.amax(dim=0) > stage1.amax(dim=0))
        pred = torch.where(beaten, seg_pred, pred)
    return pred, raised, stage1


def packing_scores(result, probs):
    """(C, H, W) scores for argmax-based packing whose argmax is ``result.pred`` (ties aside).

    Pixels no kept mask or rejected region covers score with the input probabilities (their prediction is
    the input's argmax). With the 'reference' rule, pixels where the raised scores disagree with the
    prediction keep their stage-1 scores.
    """
    if not result.changed:
        return probs
    scores = torch.where((result.logits == 0).all(dim=0, keepdim=True), probs, result.logits)
    disagree = scores.argmax(dim=0) != result.pred
    if disagree.any() and result.stage1_logits is not None:
        scores = torch.where(disagree[None], result.stage1_logits, scores)
    return scores


@MODELS.register_module()
class SAMRefiner(nn.Module):
    """Sharpen a coarse class-probability map with SAM (Trident, Shi et al. 2025).

    Every 8-connected region of every confident class (found at half resolution) prompts SAM with its
    box, its most confident point and its class's scaled probability map as a low-resolution mask;
    masks whose predicted IoU exceeds ``iou_thresh`` replace the region (see :func:`merge_refinement`).

    Trident refines at the original image resolution: the coarse scores are resized to the original size,
    SAM embeds the original image (read again from its file, rounded up to a multiple of 16 with OpenCV's
    bilinear resize), its masks are post-processed to that size and resized bilinearly to the original
    (``resolution='original'``; ``minimal_area`` counts half-original-resolution pixels).
    ``resolution='input'`` refines at the network input instead (the test-pipeline resize of the image).

    Args:
        sam (dict | nn.Module): a SAM backend: ``SAMPredictor`` (segment-anything) or ``SAM2Predictor``
            (SAM 2 through transformers), config or module. Default segment-anything vit_b without weights.
        coarse_thresh (float): class-confidence threshold for regions and mask prompts. Default 0.1.
        minimal_area (int): smallest region, in half-resolution pixels. Default 225.
        mask_coeff (float): scale of the probability mask prompt (``sam_mask_coff``). Default 0.005.
        iou_thresh (float): keep masks with predicted IoU above it. Default 0.8.
        down_ratio (int): region resolution factor. Default 2.
        prompt_batch (int): prompts per mask-decoder call (regions of one class). Default 32.
        failed_rule (str): prediction inside rejected regions: 'reference' (default, Trident's code: the
            input prediction stays) or 'max_prob' (ovseg's fix: the input prediction where its top
            probability beats the refined one, so the prediction is the argmax of the scores).
        mask_prompt_layout (str): 'trident' (default; one (1, m, m) mask per class given to SAM unbatched,
            as Trident does, so SAM's LayerNorm2d normalises over mask rows; segment-anything only) or
            'batched' ((N, 1, m, m), SAM's documented layout; the one SAM 2 takes).
        resolution (str): 'original' (default, Trident) or 'input' (see above).
        image_multiple (int): SAM's image is resized to sides rounded up to a multiple of it (Trident:
            16, its CLIP patch size); 1 leaves it as it is. Default 16.
    """

    timed_stages = (('refine_and_pack', 'sam_refiner'), ('prompt_regions', None))  # StageTimer

    def __init__(self, sam=dict(type='SAMPredictor', arch='vit_b'), coarse_thresh=0.1, minimal_area=225,
                 mask_coeff=0.005, iou_thresh=0.8, down_ratio=2, prompt_batch=32, failed_rule='reference',
                 mask_prompt_layout='trident', resolution='original', image_multiple=16):
        super().__init__()
        self.sam = MODELS.build(sam) if isinstance(sam, dict) else sam
        if mask_prompt_layout == 'trident' and not hasattr(self.sam, 'decode_tokens'):
            raise ValueError(f"mask_prompt_layout='trident' reproduces how segment-anything's prompt encoder "
                             f"treats Trident's unbatched mask; {type(self.sam).__name__} needs "
                             f"mask_prompt_layout='batched'.")
        if failed_rule not in FAILED_REGION_RULES:
            raise ValueError(f'failed_rule must be one of {FAILED_REGION_RULES}, got {failed_rule!r}')
        if mask_prompt_layout not in MASK_PROMPT_LAYOUTS:
            raise ValueError(f'mask_prompt_layout must be one of {MASK_PROMPT_LAYOUTS}, '
                             f'got {mask_prompt_layout!r}')
        if resolution not in RESOLUTIONS:
            raise ValueError(f'resolution must be one of {RESOLUTIONS}, got {resolution!r}')
        if int(image_multiple) < 1:
            raise ValueError(f'image_multiple must be >= 1, got {image_multiple}')
        self.resolution = resolution
        self.image_multiple = int(image_multiple)
        self.coarse_thresh = float(coarse_thresh)
        self.minimal_area = int(minimal_area)
        self.mask_coeff = float(mask_coeff)
        self.iou_thresh = float(iou_thresh)
        self.down_ratio = int(down_ratio)
        self.prompt_batch = int(prompt_batch)
        self.failed_rule = failed_rule
        self.mask_prompt_layout = mask_prompt_layout

    def find_regions(self, seg_pred, probs):
        """(H, W) prediction, (C, H, W) probabilities -> CoarseRegions."""
        return find_coarse_regions(seg_pred, probs, self.coarse_thresh, self.minimal_area, self.down_ratio)

    def build_prompts(self, regions, image_size):
        """CoarseRegions -> RegionPrompts in this SAM's input frame."""
        return build_region_prompts(regions, image_size, self.sam.image_size, self.sam.mask_input_size[0],
                                    self.coarse_thresh, self.mask_coeff, square=self.sam.square_input)

    def _decode_regions(self, sam_image, prompts):
        """All region prompts -> (R,) IoU and (R, 1, m, m) logits.

        The regions of one class share its mask prompt, so they are decoded together, ``prompt_batch`` at a
        time, on one copy of the image tokens (see :mod:`~ovseg.models.proposals.shared_decoder`).
        """
        device = self.sam.device
        masks = prompts.mask_inputs.to(device)
        if self.mask_prompt_layout == 'trident':
            dense = torch.cat([self.sam.encode_masks(m, shared_unbatched=True) for m in masks])
        else:
            dense = self.sam.encode_masks(masks)
        image_pe = self.sam.dense_pe()
        num, side = len(prompts.boxes), self.sam.mask_input_size
        iou, logits = torch.zeros(num, device=device), torch.zeros((num, 1) + side, device=device)
        for group in range(len(prompts.class_order)):
            rows = (prompts.mask_index == group).nonzero()[:, 0]
            for chunk in rows.split(self.prompt_batch):
                out = self.sam.decode(sam_image, prompts.points[chunk].to(device),
                                      prompts.point_labels[chunk].to(device), prompts.boxes[chunk].to(device),
                                      dense[group:group + 1], multimask_output=False, image_pe=image_pe)
                iou[chunk.to(device)], logits[chunk.to(device)] = out.iou[:, 0], out.low_res_logits
        return iou, logits

    def sam_input(self, image):
        """The image SAM embeds: (H, W, 3) uint8 RGB resized to sides rounded up to ``image_multiple``
        with OpenCV's bilinear resize (Trident's ``get_trident_seg``); unchanged when they already are."""
        import cv2
        array = image.cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
        height, width = array.shape[:2]
        m = self.image_multiple
        size = (-(-width // m) * m, -(-height // m) * m)
        if size == (width, height):
            return array
        return cv2.resize(np.ascontiguousarray(array), size, interpolation=cv2.INTER_LINEAR)

    @torch.no_grad()
    def refine(self, image, probs, seg_pred=None, sam_image=None):
        """Refine one coarse map: :meth:`prompt_regions` then :meth:`merge`.

        Args:
            image (np.ndarray | Tensor): (H, W, 3) uint8 RGB image of the same size as ``probs``.
            probs (Tensor): (C, H, W) class probabilities (Trident's "seg_logits").
            seg_pred (Tensor, optional): (H, W) or (1, H, W) prediction; default ``probs.argmax(0)``.
            sam_image (SAMImage, optional): a precomputed embedding of ``image``.

        Returns:
            RefineResult
        """
        return self.merge(self.prompt_regions(image, probs, seg_pred, sam_image), probs)

    @torch.no_grad()
    def prompt_regions(self, image, probs, seg_pred=None, sam_image=None):
        """Regions, prompts and SAM outputs of one coarse map (arguments as :meth:`refine`).

        Returns:
            RefineResult: ``pred``/``logits`` still the inputs; ``iou``/``low_res_logits`` set when there
            are regions (the image is embedded only then).
        """
        probs = probs.float()
        seg_pred = probs.argmax(dim=0) if seg_pred is None else seg_pred.reshape(probs.shape[-2:]).long()
        if tuple(image.shape[:2]) != tuple(probs.shape[-2:]):
            raise ValueError(f'The image is {tuple(image.shape[:2])} but the map is '
                             f'{tuple(probs.shape[-2:])}; SAM refinement needs them at the same size.')
        regions = self.find_regions(seg_pred, probs)
        result = RefineResult(pred=seg_pred, logits=probs, changed=False, regions=regions)
        if len(regions) == 0:
            return result
        result.sam_image = self.sam.embed_image(self.sam_input(image)) if sam_image is None else sam_image
        result.prompts = self.build_prompts(regions, probs.shape[-2:])
        result.iou, result.low_res_logits = self._decode_regions(result.sam_image, result.prompts)
        return result

    @torch.no_grad()
    def merge(self, result, probs, iou_thresh=None, keep=None):
        """Keep the masks above the IoU threshold and merge them (see :func:`merge_refinement`).

        Args:
            result (RefineResult): from :meth:`prompt_regions` (not modified).
            probs (Tensor): (C, H, W) the same probabilities.
            iou_thresh (float, optional): overrides ``self.iou_thresh``.
            keep (Tensor, optional): (R,) bool decisions to use instead of ``iou > iou_thresh`` (e.g. to
                replay another run's decisions).

        Returns:
            RefineResult: a new result; ``changed`` is False (inputs returned) when nothing is kept, as in
            the reference, where the rejected regions then change nothing either.
        """
        thresh = self.iou_thresh if iou_thresh is None else float(iou_thresh)
        probs, seg_pred = probs.float(), result.pred
        out = dataclasses.replace(result, pred=seg_pred, logits=probs, changed=False, stage1_logits=None,
                                  failed_union=None, keep=None)
        if result.iou is None:
            return out
        if keep is None:
            keep = result.iou > thresh
        elif keep.shape != result.iou.shape:
            raise ValueError(f'keep has shape {tuple(keep.shape)}, expected {tuple(result.iou.shape)}')
        out.keep = keep = keep.to(result.iou.device, torch.bool)
        if not keep.any():
            return out
        dev = probs.device
        mask_logits = self.sam.upsample(result.low_res_logits[keep], result.sam_image)[:, 0].to(dev)
        if tuple(mask_logits.shape[-2:]) != tuple(probs.shape[-2:]):  # SAM saw the rounded-up image
            mask_logits = F.interpolate(mask_logits[None], probs.shape[-2:], mode='bilinear',
                                        align_corners=False)[0]
        failed = self._failed_union(result.regions, ~keep, probs.shape[-2:]).to(dev)
        classes = result.regions.classes[keep.cpu()].to(dev)
        out.pred, out.logits, out.stage1_logits = merge_refinement(mask_logits, classes, probs, seg_pred,
                                                                   failed, self.failed_rule)
        out.failed_union, out.changed = failed, True
        return out

    @staticmethod
    def _failed_union(regions, rejected, size):
        if not rejected.any():
            return torch.zeros(size, dtype=torch.bool)
        masks = regions.masks(rejected.cpu()).float()[None]
        return F.interpolate(masks, size, mode='nearest')[0].amax(dim=0) > 0

    @torch.no_grad()
    def refine_and_pack(self, probs, inputs, data_samples=None, data_preprocessor=None):
        """Segmentor hook: refine a batch and pack it into ``SegDataSample``s at the original size.

        Args:
            probs (Tensor): (B, K, H, W) probabilities at the (padded) input size.
            inputs (Tensor): (B, 3, H, W) preprocessed images.
            data_samples (list[SegDataSample], optional): ``img_shape``, ``ori_shape`` and, for
                ``resolution='original'``, ``img_path`` (or ``ori_img``) per image.
            data_preprocessor (nn.Module, optional): the segmentor's, to undo its normalisation.

        Returns:
            list[SegDataSample]: ``seg_logits`` (scores whose argmax is the refined prediction) and
            ``pred_sem_seg`` at the original size.
        """
        if self.resolution == 'input':
            return pack_seg_results(self(probs, inputs, data_samples, data_preprocessor), data_samples,
                                    inputs.shape[-2:])
        results = pack_seg_results(probs, data_samples, inputs.shape[-2:])
        for sample in results:
            scores = sample.seg_logits.data
            result = self.refine(self.original_image(sample), scores)
            refined = packing_scores(result, scores.float()).to(scores.dtype)
            sample.set_data({'seg_logits': PixelData(data=refined),
                             'pred_sem_seg': PixelData(data=result.pred[None].to(sample.pred_sem_seg.data))})
        return results

    @staticmethod
    def original_image(sample):
        """(H0, W0, 3) uint8 RGB original image of a data sample: metainfo ``ori_img`` if present, else
        the file at ``img_path`` read as Trident does (OpenCV, converted to RGB)."""
        meta = sample.metainfo
        image = meta.get('ori_img')
        if image is None:
            path = meta.get('img_path')
            if not path or not osp.isfile(str(path)):
                raise ValueError('SAM refinement at the original resolution needs the original image: data '
                                 f'samples with an existing img_path (got {path!r}) or ori_img, or '
                                 "SAMRefiner(resolution='input').")
            import mmcv
            image = mmcv.imread(str(path), channel_order='rgb')
        image = np.asarray(image)
        ori = tuple(meta.get('ori_shape', image.shape[:2])[:2])
        if image.shape[:2] != ori:
            raise ValueError(f'original image {image.shape[:2]} does not match ori_shape {ori}')
        return image

    @torch.no_grad()
    def forward(self, probs, inputs, data_samples=None, data_preprocessor=None):
        """Refine a batch of probability maps at the network input resolution (``resolution='input'``).

        Args:
            probs (Tensor): (B, K, H, W) probabilities at the (padded) input size.
            inputs (Tensor): (B, 3, H, W) preprocessed images.
            data_samples (list[SegDataSample], optional): ``img_shape`` (unpadded size) per image.
            data_preprocessor (nn.Module, optional): the segmentor's, to undo its normalisation.

        Returns:
            Tensor: (B, K, H, W) scores whose argmax is the refined prediction.
        """
        images = images_from_inputs(inputs, data_preprocessor)
        out = probs.clone()
        for i in range(probs.shape[0]):
            meta = data_samples[i].metainfo if data_samples is not None else {}
            h, w = meta.get('img_shape', probs.shape[-2:])[:2]
            result = self.refine(images[i, :h, :w], probs[i, :, :h, :w])
            out[i, :, :h, :w] = packing_scores(result, probs[i, :, :h, :w].float()).to(out.dtype)
        return out
