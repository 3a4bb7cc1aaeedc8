from .similarity_head import OVSimilarityHead

__all__ = ['OVSimilarityHead']
