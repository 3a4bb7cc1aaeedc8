"""Pure-PyTorch versions of the ``mmcv.ops`` functions that mmseg and ovseg use.

They are installed as ``mmcv.ops`` only when compiled mmcv is absent (``mmcv-lite``); see
:func:`ovseg.utils.mmcv_ops.ensure_mmcv_ops`. Nothing here imports mmcv or mmseg.
"""
from .focal_loss import sigmoid_focal_loss
from .point_sample import point_sample

__all__ = ['point_sample', 'sigmoid_focal_loss']
