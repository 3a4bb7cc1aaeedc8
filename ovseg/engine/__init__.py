"""Runner-side extensions for mmengine: hooks and distributed settings."""
from .distributed import default_model_wrapper, prepare_distributed
from .hooks import WeightsOnlyCheckpointHook

__all__ = ['WeightsOnlyCheckpointHook', 'default_model_wrapper', 'prepare_distributed']
