"""AnoVL's domain-aware state prompts (:class:`AnoVLStatePrompts`): per class, the mean of the
unnormalised embeddings of its normal and anomalous sentences (:mod:`ovseg.text.anovl_prompts`).

Reference: hq-deng/AnoVL (``vl_test.py``); the head is :class:`ovseg.models.decode_heads.AnoVLHead`.
"""
import torch
import torch.nn.functional as F

from ovseg.models.anomaly.prompts import AnomalyStatePrompts
from ovseg.registry import MODELS
from ovseg.text.anovl_prompts import (ANOVL_ANOMALOUS_STATES, ANOVL_CLASS_ALIASES, ANOVL_NORMAL_STATES,
                                      ANOVL_TEXTURES, anovl_prompts, anovl_templates)


@MODELS.register_module()
class AnoVLStatePrompts(AnomalyStatePrompts):
    """[normal, anomalous] text embeddings from AnoVL's domain-aware prompt ensemble.

    Textures (``textures``) use the industrial-photo / textural-photo / surface-picture templates,
    everything else the industrial-photo / industrial-image / manufacturing-image ones; sentences are
    template-major; each state's embedding is the mean of the unnormalised sentence embeddings.
    Cached per (CLIP model, class name).

    Args:
        textures (Sequence[str]): texture category names. Default MVTec's carpet, leather, grid,
            tile, wood.
        aliases (dict): name substitutions in the sentences. Default macaroni1/2 -> macaroni.
        normal (Sequence[str]): normal states. Default AnoVL's 7.
        anomalous (Sequence[str]): anomalous states. Default AnoVL's 7.
        batch_size (int): sentences per text-tower call. Default 256.
    """

    def __init__(self, textures=ANOVL_TEXTURES, aliases=None, normal=ANOVL_NORMAL_STATES,
                 anomalous=ANOVL_ANOMALOUS_STATES, batch_size=256):
        super().__init__(prompt_set=dict(normal=normal, anomalous=anomalous, templates=anovl_templates(False)),
                         normalize_prompts=False, batch_size=batch_size)
        self.textures = tuple(textures)
        self.aliases = dict(ANOVL_CLASS_ALIASES if aliases is None else aliases)
        self._sentence_cache = {}

    def prompts(self, class_name):
        """(normal sentences, anomalous sentences) of ``class_name`` (462 each by default)."""
        return anovl_prompts(class_name, self.textures, self.aliases, self.prompt_set['normal'],
                             self.prompt_set['anomalous'])

    def sentence_embeddings(self, backbone, class_name):
        """(2S, C) L2-normalised sentence embeddings, S normal then S anomalous (the adapter's basis)."""
        key = (id(backbone.clip), class_name)
        if key not in self._sentence_cache:
            normal, anomalous = self.prompts(class_name)
            emb = torch.cat([self.prompt_embeddings(backbone, normal), self.prompt_embeddings(backbone, anomalous)])
            self._sentence_cache[key] = F.normalize(emb, dim=-1)
        return self._sentence_cache[key]
