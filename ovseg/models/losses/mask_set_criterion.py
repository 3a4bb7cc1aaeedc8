"""Set-prediction loss of Mask2Former / FC-CLIP: Hungarian matching, then CE + point-sampled BCE + dice."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size

from ovseg.models.losses.mask_point_losses import (dice_loss, sigmoid_ce_loss, torch_rand,
                                                   uncertain_point_coords)
from ovseg.models.losses.point_mask_matcher import PointMaskHungarianMatcher
from ovseg.ops.point_sample import point_sample
from ovseg.registry import MODELS


@MODELS.register_module()
class MaskSetCriterion(nn.Module):
    """Losses of a mask-classification model, with deep supervision.

    For the final prediction and each auxiliary one: match queries to targets
    (:class:`PointMaskHungarianMatcher`), then

    - ``loss_ce``: cross-entropy over K + 1 classes of every query (unmatched ones target "no object",
      weighted ``no_object_weight``);
    - ``loss_mask`` / ``loss_dice``: sigmoid BCE and dice of matched masks on ``num_points``
      uncertainty-sampled points, normalised by the number of targets (averaged over processes).

    Keys of auxiliary outputs get the suffix ``_i``; every loss is multiplied by its weight.

    Args:
        num_classes (int): K (training vocabulary size).
        matcher (dict): matcher config. Default ``PointMaskHungarianMatcher`` with the weights below.
        class_weight (float): weight of ``loss_ce`` (and of the class cost). Default 2.0.
        mask_weight (float): weight of ``loss_mask``. Default 5.0.
        dice_weight (float): weight of ``loss_dice``. Default 5.0.
        no_object_weight (float): CE weight of the "no object" class. Default 0.1.
        num_points (int): points per mask. Default 12544.
        oversample_ratio (float): default 3.0. importance_sample_ratio (float): default 0.75.
        deep_supervision (bool): also supervise ``aux_outputs``. Default True.
    """

    def __init__(self, num_classes, matcher=None, class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                 no_object_weight=0.1, num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75,
                 deep_supervision=True):
        super().__init__()
        self.num_classes = num_classes
        if matcher is None:
            matcher = PointMaskHungarianMatcher(class_weight, mask_weight, dice_weight, num_points)
        self.matcher = MODELS.build(matcher) if isinstance(matcher, dict) else matcher
        self.weights = dict(loss_ce=class_weight, loss_mask=mask_weight, loss_dice=dice_weight)
        self.no_object_weight = no_object_weight
        self.num_points, self.oversample_ratio = num_points, oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision

    def class_weights(self, device):
        """(K + 1,) CE class weights: 1 for real classes, ``no_object_weight`` for the last."""
        weight = torch.ones(self.num_classes + 1, device=device)
        weight[-1] = self.no_object_weight
        return weight

    def loss_labels(self, logits, targets, indices):
        """Cross-entropy of (B, Q, K + 1) logits; unmatched queries target class K."""
        logits = logits.float()
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                                    device=logits.device)
        for b, ((src, tgt), target) in enumerate(zip(indices, targets)):
            target_classes[b, src.to(logits.device)] = target['labels'][tgt.to(target['labels'].device)].to(
                logits.device)
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.class_weights(logits.device))

    def loss_masks(self, masks, targets, indices, num_masks, rand):
        """Point-sampled BCE and dice of matched (B, Q, H, W) mask logits -> (loss_mask, loss_dice)."""
        src = torch.cat([masks[b, s.to(masks.device)] for b, (s, _) in enumerate(indices)])[:, None]
        tgt = torch.cat([t['masks'][j.to(t['masks'].device)] for t, (_, j) in zip(targets, indices)])
        tgt = tgt.to(src)[:, None]
        if src.shape[0] == 0:  # no target in the batch: keep the graph, contribute zero
            zero = masks.sum() * 0.0
            return zero, zero
        with torch.no_grad():
            coords = uncertain_point_coords(src, self.num_points, self.oversample_ratio,
                                            self.importance_sample_ratio, rand)
            labels = point_sample(tgt, coords, align_corners=False).squeeze(1)
        logits = point_sample(src, coords, align_corners=False).squeeze(1)
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    def _num_masks(self, targets, device):
        num = torch.as_tensor([float(sum(len(t['labels']) for t in targets))], device=device)
        world = get_world_size()
        if world > 1:
            all_reduce(num)
        return torch.clamp(num / world, min=1).item()

    def forward(self, outputs, targets, rand=torch_rand):
        """Weighted losses.

        Args:
            outputs (dict): ``pred_logits`` (B, Q, K + 1), ``pred_masks`` (B, Q, H, W), optional
                ``aux_outputs`` (list of such dicts).
            targets (list[dict]): per image ``labels`` (T,) int64 in [0, K) and ``masks`` (T, H', W') binary,
                zero-padded like the input.
            rand (Callable): ``rand(shape, device)`` uniform source; calls per supervised output: the
                matcher's points, then the loss's candidate and extra points.

        Returns:
            dict[str, Tensor]: ``loss_ce``, ``loss_mask``, ``loss_dice`` and ``*_i`` for auxiliary output i.
        """
        num_masks = self._num_masks(targets, outputs['pred_logits'].device)
        stages = [('', outputs)]
        if self.deep_supervision:
            stages += [(f'_{i}', aux) for i, aux in enumerate(outputs.get('aux_outputs', []))]
        losses = {}
        for suffix, out in stages:
            indices = self.matcher(out, targets, rand=rand)
            loss_ce = self.loss_labels(out['pred_logits'], targets, indices)
            loss_mask, loss_dice = self.loss_masks(out['pred_masks'], targets, indices, num_masks, rand)
            for name, value in (('loss_ce', loss_ce), ('loss_mask', loss_mask), ('loss_dice', loss_dice)):
                losses[name + suffix] = value * self.weights[name]
        return losses
