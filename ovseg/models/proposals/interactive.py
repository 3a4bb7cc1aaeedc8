"""Interactive prompts: clicks and boxes -> SAM masks -> open-vocabulary labels from dense CLIP features.

Usage::

    prompter = InteractivePrompter(segmentor, sam=dict(type='SAMPredictor', arch='vit_b', checkpoint=...))
    prompter.set_image(rgb)                              # SAM embedding + CLIP features, once per image
    result = prompter(points=[[120, 80], [300, 40]], point_labels=[1, 0], vocabulary=['cat', 'dog'])
    result.masks, result.label_names, result.class_probs
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ovseg.models.proposals.mask_pooling import classify_pooled, pool_features
from ovseg.registry import MODELS


@dataclass
class InteractiveResult:
    """Labelled masks of one prompt call.

    Attributes:
        masks (Tensor): (M, H, W) bool, one per prompt (see :meth:`InteractivePrompter.__call__`).
        mask_scores (Tensor): (M,) SAM's predicted IoU of each mask.
        labels (Tensor): (M,) int64 index of the best class in the vocabulary.
        label_names (list[str]): display name of each label.
        class_probs (Tensor): (M, K) class probabilities of each mask.
        low_res_logits (Tensor): (M, 1, m, m) SAM logits, to pass back as ``mask_input`` when refining.
    """

    masks: torch.Tensor
    mask_scores: torch.Tensor
    labels: torch.Tensor
    label_names: List[str]
    class_probs: torch.Tensor
    low_res_logits: torch.Tensor


class InteractivePrompter:
    """SAM masks for user prompts, labelled by a CLIP segmentor's text classifier.

    Args:
        segmentor (OVSegmentor): any ovseg open-vocabulary segmentor (its backbone, optional refiner,
            head, text classifier, background rule and data-preprocessor normalisation are used).
        sam (nn.Module | dict): a SAM backend (``SAMPredictor``, ``SAM2Predictor``) or its config.
        clip_short_side (int, optional): resize the image so that its short side is this before the CLIP
            backbone (None keeps the size). Default 448, the usual test scale.
        multimask (bool): for a prompt made of a single positive point, ask SAM for three masks and keep
            the one with the highest predicted IoU (SAM's advice for ambiguous clicks). Default True.
    """

    def __init__(self, segmentor, sam=dict(type='SAMPredictor', arch='vit_b'), clip_short_side=448,
                 multimask=True):
        self.segmentor = segmentor
        self.sam = MODELS.build(sam) if isinstance(sam, dict) else sam
        self.clip_short_side = clip_short_side
        self.multimask = multimask
        self._state = None

    @torch.no_grad()
    def set_image(self, image):
        """Embed an (H, W, 3) uint8 RGB image for SAM and compute its dense CLIP features (once)."""
        image = np.ascontiguousarray(image.cpu().numpy() if torch.is_tensor(image) else image)
        sam_image = self.sam.embed_image(image)
        x = self._clip_input(image)
        stride = self.segmentor.backbone.stride
        size = tuple(x.shape[-2:])
        x = F.pad(x, (0, (-size[1]) % stride, 0, (-size[0]) % stride))
        feats = self.segmentor.extract_feat(x)
        self._state = dict(sam_image=sam_image, feats=feats, clip_size=size, padded=tuple(x.shape[-2:]))

    def _clip_input(self, image):
        device = next(self.segmentor.backbone.parameters()).device
        x = torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float()
        if self.clip_short_side:
            h, w = x.shape[-2:]
            scale = self.clip_short_side / min(h, w)
            size = (round(h * scale), round(w * scale))
            x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        pre = self.segmentor.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            # the preprocessor normalises after converting mmcv's BGR to RGB; here the image is RGB already
            rgb = x if getattr(pre, 'channel_conversion', True) else x.flip(1)
            return (rgb - pre.mean.to(x)) / pre.std.to(x)
        return x

    def _group_prompts(self, points, point_labels, boxes):
        """Arrays -> (N, P, 2) points, (N, P) labels, (N, 4) boxes: one prompt for all points (with at
        most one box), or one prompt per box."""
        pts = None if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
        box = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if pts is not None and len(pts) == 0:
            pts = None
        if box is not None and len(box) == 0:
            box = None
        if pts is None and box is None:
            raise ValueError('Give at least one point (with its label) or one box.')
        labels = None
        if pts is not None:
            labels = np.ones(len(pts), np.int64) if point_labels is None else \
                np.asarray(point_labels, dtype=np.int64).reshape(-1)
            if len(labels) != len(pts) or not np.isin(labels, (0, 1)).all():
                raise ValueError(f'point_labels must give 1 (positive) or 0 (negative) for each of the '
                                 f'{len(pts)} points, got {labels.tolist()}.')
            if box is not None and len(box) > 1:
                raise ValueError('Points can be combined with at most one box; got '
                                 f'{len(box)} boxes. Call once per box instead.')
            pts, labels = pts[None], labels[None]
        return pts, labels, box

    @torch.no_grad()
    def __call__(self, points=None, point_labels=None, boxes=None, vocabulary=None, mask_input=None):
        """Masks and labels for the prompts on the image given to :meth:`set_image`.

        Args:
            points (array-like, optional): (P, 2) xy pixel coordinates; all points form one prompt.
            point_labels (array-like, optional): (P,) 1 = positive (default), 0 = negative.
            boxes (array-like, optional): (M, 4) xyxy pixel boxes, one prompt each (at most one with points).
            vocabulary (optional): anything :func:`ovseg.text.load_vocabulary` accepts; sets the
                segmentor's vocabulary (kept for later calls). Default: the segmentor's current one.
            mask_input (Tensor, optional): (1, 1, m, m) logits from a previous result to refine the mask.

        Returns:
            InteractiveResult

        Raises:
            RuntimeError: no image set. ValueError: no prompt, bad labels, a point outside the image, an
                empty box, points with several boxes.
        """
        if self._state is None:
            raise RuntimeError('Call set_image(image) before prompting.')
        if vocabulary is not None:
            self.segmentor.set_vocabulary(vocabulary)
        pts, labels, box = self._group_prompts(points, point_labels, boxes)
        multimask = self.multimask and box is None and pts.shape[1] == 1 and labels[0, 0] == 1
        sam_image = self._state['sam_image']
        out = self.sam.predict(sam_image, pts, labels, box, mask_input, multimask_output=multimask)
        best = out.iou.argmax(dim=1)
        rows = torch.arange(len(best))
        low_res, scores = out.low_res_logits[rows, best][:, None], out.iou[rows, best]
        masks = self.sam.upsample(low_res, sam_image)[:, 0] > self.sam.mask_threshold
        probs = self._classify(masks)
        labels_out = probs.argmax(dim=1)
        names = self.segmentor.vocabulary.names
        return InteractiveResult(masks=masks, mask_scores=scores, labels=labels_out,
                                 label_names=[names[i] for i in labels_out.tolist()], class_probs=probs,
                                 low_res_logits=low_res)

    def _classify(self, masks):
        """(M, H, W) masks -> (M, K) class probabilities from the mask-pooled CLIP features."""
        feats, (h, w), padded = self._state['feats'], self._state['clip_size'], self._state['padded']
        device = feats.dense.device
        resized = F.adaptive_avg_pool2d(masks[:, None].float().to(device), (h, w))
        resized = F.pad(resized, (0, padded[1] - w, 0, padded[0] - h))
        weights = F.adaptive_avg_pool2d(resized, feats.grid_size).flatten(1)
        cells = weights.sum(dim=1, keepdim=True)
        pooled = pool_features(weights, feats.dense[0]) / cells.clamp(min=1e-6)
        objectness: Optional[torch.Tensor] = None
        if feats.objectness is not None:
            objectness = (weights @ feats.objectness[0, 0].float().flatten()) / cells[:, 0].clamp(min=1e-6)
        return classify_pooled(self.segmentor, pooled, objectness)
