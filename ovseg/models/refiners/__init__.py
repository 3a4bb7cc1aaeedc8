from .clip_dinoiser import CLIPDINOiserRefiner, correlation_pool
from .sam_correlation import SAMCorrelationAggregator

__all__ = ['CLIPDINOiserRefiner', 'SAMCorrelationAggregator', 'correlation_pool']
