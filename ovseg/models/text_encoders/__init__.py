from .text_classifier import ClassEmbeddings, OVTextClassifier, max_over_synonyms
from .trimmed_text import encode_text_trimmed

__all__ = ['ClassEmbeddings', 'OVTextClassifier', 'encode_text_trimmed', 'max_over_synonyms']
