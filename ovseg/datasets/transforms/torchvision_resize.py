"""Image resizing as torchvision resizes float tensors (anomalib's WinCLIP pre-processor)."""
import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ovseg.registry import TRANSFORMS

INTERPOLATIONS = {'nearest': InterpolationMode.NEAREST, 'bilinear': InterpolationMode.BILINEAR,
                  'bicubic': InterpolationMode.BICUBIC}


@TRANSFORMS.register_module()
class TorchvisionResize(BaseTransform):
    """Resize ``img`` with ``torchvision.transforms.v2.functional.resize`` on its float values.

    mmcv's ``Resize`` works on uint8 arrays with OpenCV (no antialiasing: a 1024 -> 240 bicubic
    downscale samples 4 of every ~18 input pixels) or PIL (antialiased, rounded back to uint8).
    anomalib's WinCLIP pre-processor resizes the float image tensor with torchvision, antialiased and
    neither clipped nor rounded; this transform does the same, so ``img`` becomes a float32 (H, W, C)
    array in 0-255 units (values slightly outside that range remain, as in the reference) for the data
    preprocessor's mean / std. Resizing is linear, so resizing 0-255 values and resizing the reference's
    0-1 values differ only by float rounding.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``. Added keys: ``scale``,
    ``scale_factor`` (w, h), ``keep_ratio``.

    Args:
        scale (tuple[int, int]): target (w, h), mmcv's order; with ``keep_ratio`` the largest size
            that fits it (``mmcv.rescale_size``).
        keep_ratio (bool): keep the aspect ratio. Default False.
        interpolation (str): 'nearest', 'bilinear' or 'bicubic'. Default 'bicubic'.
        antialias (bool): torchvision's antialiasing when downscaling. Default True.
    """

    def __init__(self, scale, keep_ratio=False, interpolation='bicubic', antialias=True):
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}')
        self.scale = (int(scale[0]), int(scale[1]))
        self.keep_ratio = bool(keep_ratio)
        self.interpolation = interpolation
        self.antialias = bool(antialias)

    def transform(self, results):
        img = results['img']
        height, width = img.shape[:2]
        if self.keep_ratio:
            new_w, new_h = mmcv.rescale_size((width, height), self.scale)
        else:
            new_w, new_h = self.scale
        x = torch.from_numpy(np.ascontiguousarray(img)).float()
        x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
        y = TF.resize(x, [new_h, new_w], interpolation=INTERPOLATIONS[self.interpolation],
                      antialias=self.antialias)
        results['img'] = y[0].numpy() if img.ndim == 2 else y.permute(1, 2, 0).numpy()
        results['img_shape'] = (new_h, new_w)
        results['scale'] = (new_w, new_h)
        results['scale_factor'] = (new_w / width, new_h / height)
        results['keep_ratio'] = self.keep_ratio
        return results

    def __repr__(self):
        return (f'{type(self).__name__}(scale={self.scale}, keep_ratio={self.keep_ratio}, '
                f'interpolation={self.interpolation!r}, antialias={self.antialias})')
