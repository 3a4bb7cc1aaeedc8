"""Value-value attention of AnoVL / AnomalyCLIP: re-exported from the ViT walker's home.

The dual-path forward now lives in :mod:`ovseg.models.backbones.value_value` (the only code that walks
a tower is under ``models/backbones``); these names stay importable from here.
"""
from ovseg.models.backbones.value_value import (dual_path_transformer, embed_tokens, plain_softmax, project_tokens,
                                                resize_pos_embed)

__all__ = ['dual_path_transformer', 'embed_tokens', 'plain_softmax', 'project_tokens', 'resize_pos_embed']
