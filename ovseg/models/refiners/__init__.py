from .clip_dinoiser import CLIPDINOiserRefiner, correlation_pool

__all__ = ['CLIPDINOiserRefiner', 'correlation_pool']
