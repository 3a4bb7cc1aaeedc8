"""Class text embeddings: vocabulary x templates -> (S, C), batched, trimmed and cached on disk."""
import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log

from ovseg.models.text_encoders.text_cache import TextEmbeddingCache, cache_key, weights_fingerprint
from ovseg.registry import MODELS
from ovseg.text import get_templates, load_vocabulary

# Vocabularies whose embeddings stay in memory (least recently used dropped): a server answering
# free-form vocabularies must not grow without bound.
MEMORY_ENTRIES = 64


@dataclass
class ClassEmbeddings:
    """Text embeddings of a vocabulary.

    Attributes:
        embeddings (Tensor): (S, C) L2-normalised embedding of every synonym (template mean).
        synonym_to_class (Tensor): (S,) int64 class index of each synonym.
        num_classes (int): K.
        names (list[str]): display name of each class.
    """

    embeddings: torch.Tensor
    synonym_to_class: torch.Tensor
    num_classes: int
    names: list

    def to(self, device):
        return ClassEmbeddings(self.embeddings.to(device), self.synonym_to_class.to(device),
                               self.num_classes, self.names)


def max_over_synonyms(logits, synonym_to_class, num_classes):
    """(B, S, ...) synonym scores -> (B, K, ...) class scores (maximum over each class's synonyms)."""
    if logits.shape[1] == num_classes:
        return logits
    shape = list(logits.shape)
    shape[1] = num_classes
    index = synonym_to_class.view(1, -1, *([1] * (logits.dim() - 2))).expand_as(logits)
    out = logits.new_full(shape, float('-inf'))
    return out.scatter_reduce(1, index, logits, reduce='amax', include_self=True)


@MODELS.register_module()
class OVTextClassifier(nn.Module):
    """Turns a vocabulary into normalised class embeddings with a CLIP text tower.

    Each synonym is formatted with every template; each prompt embedding is L2-normalised, the mean over
    templates is L2-normalised again (CLIP zero-shot classifier). Prompts are encoded in batches sorted by
    length and trimmed to the longest prompt of the batch. Results are cached on disk by
    (text weights, tokenizer, templates, names, precision) and in memory per vocabulary.

    Args:
        templates (str | Sequence[str]): template set name ('imagenet80', 'maskclip85', 'vild14', 'single')
            or a list of templates with one '{}'. Default 'imagenet80'.
        batch_size (int): prompts per text-tower call. Default 256.
        cache_dir (str, optional): on-disk cache folder; None disables it. Default '~/.cache/ovseg/text'.
        precision (str): 'fp32' or 'bf16' (autocast for the text tower; results stored in float32).
    """

    def __init__(self, templates='imagenet80', batch_size=256, cache_dir='~/.cache/ovseg/text',
                 precision='fp32'):
        super().__init__()
        if precision not in ('fp32', 'bf16', 'fp16'):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
        self.templates = get_templates(templates)
        self.batch_size = int(batch_size)
        self.cache = TextEmbeddingCache(cache_dir)
        self.precision = precision
        self._fingerprints = {}
        self._memory = OrderedDict()

    def _fingerprint(self, backbone):
        key = id(backbone.clip)
        if key not in self._fingerprints:
            text_state = {k: v for k, v in backbone.clip.state_dict().items() if not k.startswith('visual.')}
            self._fingerprints[key] = weights_fingerprint(text_state)
        return self._fingerprints[key]

    def tokenize(self, backbone, prompts):
        """(N,) prompts -> (N, L) int64 token ids with the backbone's tokenizer."""
        return backbone.tokenizer(list(prompts)).long()

    @torch.no_grad()
    def encode_prompts(self, backbone, prompts):
        """Encode prompts -> (N, C) L2-normalised float32 embeddings, batched by length."""
        tokens = self.tokenize(backbone, prompts)
        order = torch.argsort(tokens.argmax(dim=-1))
        device = next(backbone.clip.parameters()).device
        out = torch.empty(len(prompts), backbone.embed_dim)
        for start in range(0, len(prompts), self.batch_size):
            idx = order[start:start + self.batch_size]
            with self._autocast(device):
                emb = backbone.encode_tokens(tokens[idx].to(device))
            out[idx] = F.normalize(emb.float(), dim=-1).cpu()
        return out

    def _autocast(self, device):
        if self.precision == 'fp32':
            return torch.autocast(device.type, enabled=False)
        dtype = torch.bfloat16 if self.precision == 'bf16' else torch.float16
        return torch.autocast(device.type, dtype=dtype)

    def encode_synonyms(self, backbone, synonyms):
        """(S,) names -> (S, C) normalised template-mean embeddings (uses the disk cache)."""
        key = None
        if self.cache.root is not None:  # the fingerprint costs a pass over the text weights
            key = cache_key(self._fingerprint(backbone), f'{type(backbone.tokenizer).__name__}:'
                            f'{backbone.context_length}', self.templates, synonyms, self.precision)
            cached = self.cache.load(key)
            if cached is not None and cached.shape[0] == len(synonyms):
                return cached
        prompts = [t.format(s) for s in synonyms for t in self.templates]
        self._announce(len(synonyms), key)
        emb = self.encode_prompts(backbone, prompts).view(len(synonyms), len(self.templates), -1)
        emb = F.normalize(emb.mean(dim=1), dim=-1)
        if key is not None:
            self.cache.save(key, emb)
        return emb

    def _announce(self, num_synonyms, key):
        """Say what the text tower is about to encode (minutes on a CPU for a large vocabulary)."""
        count = num_synonyms * len(self.templates)
        where = (f'cached in {self.cache.root} for the next run' if key is not None else
                 'not cached: the cache is off (cache_dir=None; random-weight runs switch it off)')
        print_log(f'ovseg: encoding {count} prompts ({num_synonyms} names x {len(self.templates)} templates) '
                  f'with the CLIP text tower, {where}', logger='current', level=logging.INFO)

    def forward(self, backbone, vocabulary):
        """Embed a vocabulary (anything :func:`ovseg.text.load_vocabulary` accepts) -> ClassEmbeddings."""
        vocab = load_vocabulary(vocabulary)
        mem_key = (id(backbone.clip), vocab.classes)
        if mem_key not in self._memory:
            emb = self.encode_synonyms(backbone, vocab.synonyms)
            self._memory[mem_key] = ClassEmbeddings(
                emb, torch.tensor(vocab.synonym_to_class, dtype=torch.long), len(vocab), vocab.names)
        device = next(backbone.clip.parameters()).device
        self._memory.move_to_end(mem_key)
        while len(self._memory) > MEMORY_ENTRIES:
            self._memory.popitem(last=False)
        return self._memory[mem_key].to(device)
