"""Point and box prompts for :class:`~ovseg.apis.OVSegInferencer`: SAM masks labelled by CLIP.

Call graph::

    OVSegInferencer.prompt(image, points, point_labels, boxes, vocabulary)
      └─ load_image ─ PromptSession.result
           └─ InteractivePrompter.set_image   SAM embedding + dense CLIP features, once per image
                                               (kept while the same pixels come back)
           └─ InteractivePrompter(...)        SAM masks for the prompt, mask-pooled CLIP class scores
           └─ objects overlay (optional)
"""
import hashlib

import numpy as np
import torch

from ovseg.apis.visualization import blend_mask, class_palette, draw_legend


def image_key(rgb):
    """A key that identifies an image by its pixels (shape + SHA-1 of the bytes)."""
    return rgb.shape, hashlib.sha1(np.ascontiguousarray(rgb).data).hexdigest()


def objects_overlay(image, masks, labels, names, alpha=0.5):
    """Colour each mask by its label's palette colour, later masks on top, with a legend.

    Args:
        image (ndarray): (H, W, 3) uint8 RGB.
        masks (ndarray): (M, H, W) bool.
        labels (ndarray): (M,) class indices into ``names``.
        names (list[str]): the vocabulary's display names.
        alpha (float): mask opacity. Default 0.5.

    Returns:
        ndarray: (H, W, 3) uint8 RGB.
    """
    palette = class_palette(len(names))
    index = np.full(image.shape[:2], len(names), dtype=np.int64)  # len(names): no mask
    for mask, label in zip(masks, labels):
        index[mask] = int(label)
    colours = np.concatenate([palette, np.zeros((1, 3), np.uint8)])
    blended = blend_mask(image, index, colours, alpha)
    blended[index == len(names)] = image[index == len(names)]
    shown = sorted(set(int(v) for v in labels))
    shares = {names[i]: float((index == i).mean()) for i in shown}
    return draw_legend(blended, [names[i] for i in shown], shares, palette[shown])


class PromptSession:
    """An :class:`InteractivePrompter` over an inferencer's segmentor and the image it embedded.

    Args:
        segmentor (nn.Module): the inferencer's open-vocabulary segmentor.
        sam (nn.Module | dict): the SAM backend (SAMPredictor, SAM2Predictor) or its config.
        clip_short_side (int): short side of the image given to the CLIP backbone. Default 448.
    """

    def __init__(self, segmentor, sam, clip_short_side=448):
        from ovseg.models.proposals import InteractivePrompter  # SAM is optional for text mode
        self.prompter = InteractivePrompter(segmentor, sam=sam, clip_short_side=clip_short_side)
        device = next(segmentor.parameters()).device
        self.prompter.sam.to(device).eval()
        self._key = None

    def set_image(self, rgb):
        """Embed ``rgb`` for SAM and CLIP unless it is the image embedded last."""
        key = image_key(rgb)
        if key != self._key:
            self._key = None  # a failure below must not leave a stale key
            self.prompter.set_image(rgb)
            self._key = key

    def forget_image(self):
        """Drop the embedded image (the vocabulary or the model changed under it)."""
        self._key = None

    @torch.no_grad()
    def result(self, rgb, points, point_labels, boxes, return_overlay):
        """Prompts on ``rgb`` -> the result dict of :meth:`OVSegInferencer.prompt`."""
        self.set_image(rgb)
        out = self.prompter(points=points, point_labels=point_labels, boxes=boxes)
        names = list(self.prompter.segmentor.vocabulary.names)
        labels = out.labels.cpu().numpy()
        probs = out.class_probs.float().cpu().numpy()
        masks = out.masks.cpu().numpy()
        overlay = objects_overlay(rgb, masks, labels, names) if return_overlay else None
        return dict(masks=masks, labels=labels, label_names=list(out.label_names),
                    scores=probs[np.arange(len(labels)), labels], class_probs=probs,
                    mask_scores=out.mask_scores.float().cpu().numpy(), class_names=names,
                    low_res_logits=out.low_res_logits, overlay=overlay)
