from .dense_features import DenseFeatures

__all__ = ['DenseFeatures']
