"""The single place ovseg takes its registries from.

ovseg registers into mmsegmentation's registries, so a downstream mmseg config can use ovseg modules by
their plain type names after ``custom_imports=dict(imports=['ovseg'])``.
"""
from ovseg.utils.mmcv_ops import ensure_mmcv_ops

ensure_mmcv_ops()  # mmseg imports mmcv.ops at import time; mmcv-lite has no compiled ops

from mmseg.registry import DATA_SAMPLERS  # noqa: E402  samplers and batch samplers of dataloaders
from mmseg.registry import DATASETS  # noqa: E402  datasets
from mmseg.registry import HOOKS  # noqa: E402  runner hooks
from mmseg.registry import METRICS  # noqa: E402  evaluation metrics
from mmseg.registry import MODELS  # noqa: E402  backbones, heads, segmentors, losses, text classifiers
from mmseg.registry import TRANSFORMS  # noqa: E402  data pipeline transforms
from mmseg.registry import VISUALIZERS  # noqa: E402  visualizers

__all__ = ['DATA_SAMPLERS', 'DATASETS', 'HOOKS', 'METRICS', 'MODELS', 'TRANSFORMS', 'VISUALIZERS']
