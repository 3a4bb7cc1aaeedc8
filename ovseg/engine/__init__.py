"""Runner-side extensions for mmengine: hooks, a weights-only runner and distributed settings."""
from .distributed import default_model_wrapper, prepare_distributed
from .hooks import WeightsOnlyCheckpointHook
from .weights_only_runner import WeightsOnlyRunner

__all__ = ['WeightsOnlyCheckpointHook', 'WeightsOnlyRunner', 'default_model_wrapper', 'prepare_distributed']
