"""Two-stage open-vocabulary segmentation: SAM mask proposals classified by pooled dense CLIP features."""
import torch
import torch.nn.functional as F

from ovseg.models.proposals.mask_pooling import (OVERLAP_RULES, mask_cell_weights,
                                                 masks_to_scores, pool_features)
from ovseg.models.segmentors.ov_segmentor import OVSegmentor, _pair
from ovseg.models.utils.input_images import images_from_inputs
from ovseg.models.utils.seg_results import pack_seg_results
from ovseg.models.utils.sliding_window import window_boxes
from ovseg.registry import MODELS


@MODELS.register_module()
class SAMProposalSegmentor(OVSegmentor):
    """Classify SAM's automatic masks with dense CLIP features (MaskCLIP, optionally CLIP-DINOiser-refined).

    Call graph::

        predict(inputs, data_samples)
          └─ images_from_inputs              RGB uint8 images for SAM
          └─ per image:
               └─ proposals(image)           SAMAutomaticProposals: (N, H, W) masks
               └─ _window_pass(x, masks)     per window (whole: the image padded to the stride; slide:
                                             test_cfg windows): extract_feat ─ scores_from_features
                                             (dense probabilities, averaged) ─ mask-weighted feature sums
               └─ classify_masks             head on pooled features ─ softmax ─ background rule
               └─ masks_to_scores            overlap rule; uncovered pixels keep the dense probabilities
          └─ optional sam_refiner ─ pack_seg_results

    A mask's feature is the mean of the dense features weighted by the fraction of every feature cell the
    mask covers (summed over slide windows). Its class probabilities are the softmax of the head's scaled
    cosine with the text embeddings; with a background rule, the background class is set as in
    :func:`~ovseg.models.utils.prob_rules.apply_background`, using the mask-pooled objectness when the
    refiner predicts one. MaskCLIP+'s prompt denoising and key smoothing apply to the dense probabilities
    only. Scores in ``seg_logits`` are probabilities.

    Args:
        proposals (dict): ``SAMAutomaticProposals`` config (SAM arch/checkpoint, points per side,
            thresholds; segment-anything's defaults).
        overlap (str): rule for pixels covered by several masks: 'mean' (default; mean of their class
            probabilities), 'smallest' (the smallest mask's) or 'best_iou' (the highest predicted IoU's).
        **kwargs: :class:`OVSegmentor` arguments (backbone, vocabulary, refiner, background, test_cfg, ...).
    """

    timed_stages = (('classify_masks', 'mask_classify'),)  # StageTimer

    def __init__(self, proposals=dict(type='SAMAutomaticProposals'), overlap='mean', **kwargs):
        super().__init__(**kwargs)
        if overlap not in OVERLAP_RULES:
            raise ValueError(f'overlap must be one of {OVERLAP_RULES}, got {overlap!r}')
        self.proposals = MODELS.build(proposals)
        self.overlap = overlap

    def _windows(self, height, width):
        mode = self.test_cfg.get('mode', 'whole')
        if mode == 'whole':
            return [(0, height, 0, width)]
        if mode != 'slide':
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {mode!r}")
        return window_boxes(height, width, _pair(self.test_cfg['crop_size']), _pair(self.test_cfg['stride']))

    def _window_pass(self, x, masks):
        """(1, 3, H, W) image, (N, H, W) masks -> (K, H, W) dense probabilities, (N, C) pooled features,
        (N,) covered cells, (N,) pooled objectness or None. Windows go through the backbone one at a time."""
        height, width = x.shape[-2:]
        stride = self.backbone.stride
        probs_sum, count = None, x.new_zeros((1, height, width), dtype=torch.float32)
        feat_sum, cells, obj_sum = None, x.new_zeros(len(masks)), x.new_zeros(len(masks))
        for y1, y2, x1, x2 in self._windows(height, width):
            pad = (0, (-(x2 - x1)) % stride, 0, (-(y2 - y1)) % stride)
            feats = self.extract_feat(F.pad(x[:, :, y1:y2, x1:x2], pad))
            probs = F.interpolate(self.scores_from_features(feats), scale_factor=stride, mode='bilinear',
                                  align_corners=False)[0, :, :y2 - y1, :x2 - x1]
            if probs_sum is None:
                probs_sum = x.new_zeros((probs.shape[0], height, width), dtype=torch.float32)
            probs_sum[:, y1:y2, x1:x2] += probs
            count[:, y1:y2, x1:x2] += 1
            weights = mask_cell_weights(F.pad(masks[:, y1:y2, x1:x2], pad), feats.grid_size)
            pooled = pool_features(weights, feats.dense[0])
            feat_sum = pooled if feat_sum is None else feat_sum + pooled
            cells += weights.sum(dim=1)
            has_objectness = feats.objectness is not None
            if has_objectness:
                obj_sum += weights @ feats.objectness[0, 0].float().flatten()
        objectness = obj_sum / cells.clamp(min=1e-6) if has_objectness else None
        return probs_sum / count, feat_sum / cells.clamp(min=1e-6)[:, None], cells, objectness

    def classify_masks(self, pooled, objectness=None):
        """(N, C) pooled features -> (N, K) class probabilities (background rule applied)."""
        return self.classify_pooled(pooled, objectness)

    def segment_image(self, x, image):
        """One image: (1, 3, H, W) preprocessed, (H, W, 3) uint8 RGB -> (K, H, W) scores, proposals."""
        proposals = self.proposals(image)
        probs, pooled, cells, objectness = self._window_pass(x, proposals.masks.to(x.device))
        valid = cells > 0  # empty masks cover no feature cell
        mask_probs = self.classify_masks(pooled[valid], None if objectness is None else objectness[valid])
        scores = masks_to_scores(proposals.masks.to(x.device)[valid], mask_probs, probs, self.overlap,
                                 proposals.iou.to(x.device)[valid])
        return scores, proposals

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> list of ``SegDataSample`` (seg_logits, pred_sem_seg)."""
        images = images_from_inputs(inputs, self.data_preprocessor)
        scores = None
        for i in range(inputs.shape[0]):
            meta = data_samples[i].metainfo if data_samples is not None else {}
            h, w = meta.get('img_shape', inputs.shape[-2:])[:2]
            image_scores, _ = self.segment_image(inputs[i:i + 1, :, :h, :w], images[i, :h, :w])
            if scores is None:
                scores = image_scores.new_zeros((inputs.shape[0], image_scores.shape[0]) + inputs.shape[-2:])
            scores[i, :, :h, :w] = image_scores
        if self.sam_refiner is not None:
            return self.sam_refiner.refine_and_pack(scores, inputs, data_samples, self.data_preprocessor)
        return pack_seg_results(scores, data_samples, inputs.shape[-2:])

    def _forward(self, inputs, data_samples=None):
        return torch.stack([s.seg_logits.data for s in self.predict(inputs, data_samples)])
