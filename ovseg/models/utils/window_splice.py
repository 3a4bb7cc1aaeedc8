"""Splice-then-segment: one feature map of a large image from features of its sub-windows (Trident).

Sliding-window inference segments every window and averages the *scores*; Trident (Shi et al., ICCV 2025,
``YuHengsss/Trident`` ``preprocess_image``, ``get_windowed_imgs``, ``guidance_attn``) instead averages the
windows' *features* into one map of the whole image, which later stages (SAM-correlation aggregation,
classification) see at once. :class:`SubWindowSplicer` does that for any backbone:

1. :meth:`~SubWindowSplicer.input_size`: sides that are not multiples of the patch are resized (bilinear,
   ``align_corners=False``) so that the long side L becomes L rounded up to the patch and each side
   ``int(side * L' / L)`` rounded up to the patch; every side is at least one window (Trident applies
   that minimum on its resize path; an image smaller than a window would give windows it cannot splice);
2. :meth:`~SubWindowSplicer.windows`: mmseg's slide grid (windows of ``crop``, step ``stride``, the last
   ones moved back inside the image), row by row, on token boundaries;
3. :meth:`~SubWindowSplicer.splice`: every window's (C, gh, gw) map is added into its cells of the
   (H / p, W / p) grid and each cell divided by the number of windows covering it. A map on another grid
   than its window's tokens (a foundation model with another patch size gave the attention) is first
   resized to it bilinearly.
"""
import torch
import torch.nn.functional as F

from ovseg.models.utils.sliding_window import window_boxes


def _round_up(value, multiple):
    return -(-int(value) // multiple) * multiple


class SubWindowSplicer:
    """Sub-window cutting and feature splicing (module docstring).

    Args:
        crop (int): window side in pixels. Default 336 (Trident's).
        stride (int): window step in pixels. Default 224 (Trident's).
        patch (int): the backbone's patch size: the token grid of the spliced map. Default 16.
    """

    def __init__(self, crop=336, stride=224, patch=16):
        self.crop, self.stride, self.patch = int(crop), int(stride), int(patch)
        if self.crop % self.patch or self.stride % self.patch:
            raise ValueError(f'window {self.crop} and stride {self.stride} must be multiples of the patch '
                             f'size {self.patch}, so that windows start and end on token boundaries')

    def __repr__(self):
        return f'{type(self).__name__}(crop={self.crop}, stride={self.stride}, patch={self.patch})'

    def input_size(self, height, width):
        """(H, W) of an image -> (Hc, Wc) that the windows cut (step 1 of the module docstring)."""
        p = self.patch
        if height % p == 0 and width % p == 0:
            size = (height, width)
        else:
            long_side = max(height, width)
            target = _round_up(long_side, p)
            size = tuple(_round_up(int(side * target / long_side), p) for side in (height, width))
        return tuple(max(s, self.crop) for s in size)

    def resize(self, image):
        """(B, 3, H, W) -> (B, 3, Hc, Wc), bilinear (unchanged when the size already fits)."""
        size = self.input_size(*image.shape[-2:])
        if size == tuple(image.shape[-2:]):
            return image
        return F.interpolate(image, size=size, mode='bilinear', align_corners=False)

    def windows(self, image):
        """(1, 3, Hc, Wc) -> windows (n, 3, crop, crop) and their (n, 4) token boxes [y1, x1, y2, x2]."""
        height, width = image.shape[-2:]
        if height % self.patch or width % self.patch:
            raise ValueError(f'a {height}x{width} image is not on the {self.patch}-pixel token grid; '
                             f'resize it first (SubWindowSplicer.resize)')
        boxes = window_boxes(height, width, (self.crop, self.crop), (self.stride, self.stride))
        crops = torch.cat([image[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in boxes])
        tokens = torch.tensor([(y1, x1, y2, x2) for y1, y2, x1, x2 in boxes], dtype=torch.int64) // self.patch
        return crops, tokens

    @staticmethod
    def splice(maps, boxes, grid):
        """Average window maps into one grid (step 3 of the module docstring).

        Args:
            maps (Tensor): (n, C, gh, gw) one map per window.
            boxes (Tensor): (n, 4) token boxes [y1, x1, y2, x2] of the windows.
            grid (tuple[int, int]): (H / p, W / p) of the whole image.

        Returns:
            tuple[Tensor, Tensor]: the spliced (1, C, H / p, W / p) map and the (H / p, W / p) count of
            windows covering each cell.
        """
        out = maps.new_zeros((1, maps.shape[1]) + tuple(grid))
        count = maps.new_zeros(tuple(grid))
        for window, (y1, x1, y2, x2) in zip(maps, boxes.tolist()):
            if tuple(window.shape[-2:]) != (y2 - y1, x2 - x1):
                window = F.interpolate(window[None], size=(y2 - y1, x2 - x1), mode='bilinear',
                                       align_corners=False)[0]
            out[0, :, y1:y2, x1:x2] += window
            count[y1:y2, x1:x2] += 1
        if (count == 0).any():
            raise ValueError('the windows do not cover the grid')
        return out / count, count

    def __call__(self, image, window_fn, window_batch=8):
        """Splice any backbone's window maps: ``window_fn`` (k, 3, crop, crop) -> (k, C, gh, gw).

        Args:
            image (Tensor): (1, 3, Hc, Wc) already resized (:meth:`resize`).
            window_fn (Callable): the backbone on a batch of windows.
            window_batch (int): windows per call. Default 8.

        Returns:
            Tensor: (1, C, Hc / p, Wc / p) spliced map.
        """
        crops, boxes = self.windows(image)
        maps = torch.cat([window_fn(chunk) for chunk in crops.split(max(int(window_batch), 1))])
        grid = (image.shape[-2] // self.patch, image.shape[-1] // self.patch)
        return self.splice(maps, boxes, grid)[0]
