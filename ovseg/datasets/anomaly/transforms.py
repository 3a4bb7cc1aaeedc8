"""Loading anomaly masks: binary {0, 1} ground truth, all zeros for normal images."""
import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform

from ovseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadAnomalyMask(BaseTransform):
    """Load ``seg_map_path`` as a binary mask (nonzero -> 1) into ``gt_seg_map`` at the original size.

    A normal image (``seg_map_path`` None) gets zeros of ``ori_shape``. Place it after the image
    ``Resize`` so the mask stays at the original resolution (mmseg's test-pipeline convention); the
    anomaly segmentor resizes its maps back to ``ori_shape``.

    Raises:
        ValueError: the mask and the image differ in size.
    """

    def __init__(self, backend_args=None):
        super().__init__()
        self.backend_args = backend_args

    def transform(self, results):
        shape = tuple(results['ori_shape'][:2])
        path = results.get('seg_map_path')
        if path is None:
            mask = np.zeros(shape, dtype=np.uint8)
        else:
            data = fileio.get(path, backend_args=self.backend_args)
            mask = mmcv.imfrombytes(data, flag='unchanged', backend='pillow')
            mask = (mask.reshape(*mask.shape[:2], -1).max(axis=-1) > 0).astype(np.uint8)
            if mask.shape != shape:
                raise ValueError(f'anomaly mask {path} is {mask.shape[0]}x{mask.shape[1]} but its image is '
                                 f'{shape[0]}x{shape[1]}')
        results['gt_seg_map'] = mask
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results
