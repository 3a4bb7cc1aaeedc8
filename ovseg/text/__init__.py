"""Text-side data of ovseg: vocabularies and prompt templates (plain Python, no torch)."""
from .templates import TEMPLATE_SOURCES, TEMPLATES, get_templates
from .vocabulary import (BACKGROUND_STUFF, Vocabulary, VocabularyError, available_vocabularies,
                         load_vocabulary, parse_vocabulary_file)

__all__ = [
    'BACKGROUND_STUFF', 'TEMPLATE_SOURCES', 'TEMPLATES', 'Vocabulary', 'VocabularyError',
    'available_vocabularies',
    'get_templates', 'load_vocabulary', 'parse_vocabulary_file',
]
