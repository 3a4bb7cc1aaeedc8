"""The segmentors' inference precision: 'fp32' (default), 'bf16' or 'fp16' autocast, float32 regions.

Every segmentor with a ``precision`` option runs its image towers under :func:`autocast_for` and keeps
what decides the result (text embeddings, L2 normalisation, the final similarities, softmax,
aggregation, post-processing) in float32: those parts run in :func:`float32_region` on inputs passed
through :func:`upcast`, so they are float32 whatever autocast is active around them, and are
unchanged (bit for bit) in fp32. 'fp16' is meant for CUDA; on the CPU torch runs it too, slowly.
Training (``loss``) never uses this option (mixed-precision training is the optimiser wrapper's job).
"""
import dataclasses

import torch

PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
_HALF = (torch.bfloat16, torch.float16)


def check_precision(precision):
    """``precision`` itself when it is a key of :data:`PRECISIONS`; ValueError naming the choices."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {sorted(PRECISIONS)}, got {precision!r}')
    return precision


def _device_type(device):
    if isinstance(device, torch.Tensor):
        return device.device.type
    return torch.device(device).type


def autocast_for(precision, device):
    """Autocast context of ``precision`` on ``device`` (a device, its name or a tensor on it).

    'fp32' disables autocast (also one opened by the caller), as the segmentors always did.
    """
    dtype = PRECISIONS[check_precision(precision)]
    return torch.autocast(_device_type(device), dtype=dtype, enabled=dtype is not None)


def active_autocast_dtype(device):
    """The dtype autocast casts to on ``device``'s type, or None when autocast is off there (any torch >= 2.1)."""
    kind = _device_type(device)
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    if kind == 'cpu':
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def float32_region(device):
    """Context with autocast off on ``device``'s type (a no-op when none is active)."""
    return torch.autocast(_device_type(device), enabled=False)


def upcast(obj):
    """``obj`` with every bfloat16 / float16 tensor cast to float32, recursively through dicts, lists,
    tuples and dataclasses (new containers; float32, float64 and integer tensors are returned as they are).
    """
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.dtype in _HALF else obj
    if isinstance(obj, dict):
        return type(obj)((k, upcast(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(upcast(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: upcast(getattr(obj, f.name))
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


class PrecisionMixin:
    """A ``precision`` attribute checked on every assignment (constructor, config or at run time, e.g.
    ``model.precision = 'bf16'``) and ``_autocast(device)``, the context of the current precision.

    Put it before the ``nn.Module`` base: ``class MySegmentor(PrecisionMixin, BaseSegmentor)``.
    """

    @property
    def precision(self):
        """'fp32', 'bf16' or 'fp16'."""
        return self._precision

    @precision.setter
    def precision(self, value):
        self._precision = check_precision(value)

    def _autocast(self, device):
        return autocast_for(self.precision, device)
