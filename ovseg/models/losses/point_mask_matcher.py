"""One-to-one matching of predicted masks to targets (Hungarian algorithm on point-sampled costs)."""
import torch
from scipy.optimize import linear_sum_assignment

from ovseg.models.losses.mask_point_losses import batch_dice_cost, batch_sigmoid_ce_cost, torch_rand
from ovseg.ops.point_sample import point_sample
from ovseg.registry import MODELS


@MODELS.register_module()
class PointMaskHungarianMatcher:
    """Mask2Former's matcher: cost = w_cls·(-p[target class]) + w_mask·BCE + w_dice·dice, with both mask
    terms evaluated on ``num_points`` uniform random points shared by all masks of an image; solved by
    ``scipy.optimize.linear_sum_assignment``.

    Args:
        cost_class (float): class cost weight. Default 2.0.
        cost_mask (float): BCE cost weight. Default 5.0.
        cost_dice (float): dice cost weight. Default 5.0.
        num_points (int): sampled points. Default 12544 (112·112).
    """

    def __init__(self, cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=12544):
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError('at least one matching cost weight must be non-zero')
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    def cost_matrix(self, logits, masks, tgt_labels, tgt_masks, rand=torch_rand):
        """(Q, T) matching cost of one image.

        Args:
            logits (Tensor): (Q, K + 1) class logits. masks (Tensor): (Q, H, W) mask logits.
            tgt_labels (Tensor): (T,) int64. tgt_masks (Tensor): (T, H', W') binary (any resolution:
                points are in normalised coordinates).
            rand (Callable): ``rand(shape, device)``; called once with (1, num_points, 2).
        """
        cost_class = -logits.softmax(-1)[:, tgt_labels]
        coords = rand((1, self.num_points, 2), masks.device)
        tgt = point_sample(tgt_masks[:, None].to(masks), coords.repeat(tgt_masks.shape[0], 1, 1),
                           align_corners=False).squeeze(1)
        out = point_sample(masks[:, None], coords.repeat(masks.shape[0], 1, 1),
                           align_corners=False).squeeze(1)
        with torch.autocast(masks.device.type, enabled=False):
            out, tgt = out.float(), tgt.float()
            cost_mask = batch_sigmoid_ce_cost(out, tgt)
            cost_dice = batch_dice_cost(out, tgt)
        return self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice

    @torch.no_grad()
    def __call__(self, outputs, targets, rand=torch_rand):
        """Match every image of the batch.

        Args:
            outputs (dict): ``pred_logits`` (B, Q, K + 1), ``pred_masks`` (B, Q, H, W).
            targets (list[dict]): per image ``labels`` (T,) and ``masks`` (T, H', W').
            rand (Callable): random source (one call per image).

        Returns:
            list[tuple[Tensor, Tensor]]: per image (query indices, target indices), int64, sorted by query.
        """
        indices = []
        for b, target in enumerate(targets):
            if len(target['labels']) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(outputs['pred_logits'][b], outputs['pred_masks'][b], target['labels'],
                                    target['masks'], rand)
            rows, cols = linear_sum_assignment(cost.reshape(cost.shape[0], -1).cpu().numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64),
                            torch.as_tensor(cols, dtype=torch.int64)))
        return indices
