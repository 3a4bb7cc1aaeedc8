"""On-disk cache of class text embeddings, keyed by what determines them."""
import hashlib
import json
import os
import tempfile

import torch


def weights_fingerprint(state_dict):
    """sha256 of a state dict (names, shapes, dtypes and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{tuple(t.shape)}:{t.dtype}'.encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return digest.hexdigest()


def cache_key(fingerprint, tokenizer_id, templates, synonyms, precision):
    """Key of one (text weights, tokenizer, templates, names, precision) combination."""
    payload = json.dumps([fingerprint, tokenizer_id, list(templates), list(synonyms), precision])
    return hashlib.sha256(payload.encode()).hexdigest()


class TextEmbeddingCache:
    """Stores (S, C) float32 embedding tensors as ``<key>.pt`` files under ``root``.

    Args:
        root (str, optional): cache folder; None disables the cache.
    """

    def __init__(self, root):
        self.root = os.path.expanduser(root) if root else None

    def load(self, key):
        """Return the cached tensor or None (a corrupt file counts as a miss)."""
        if self.root is None:
            return None
        path = os.path.join(self.root, f'{key}.pt')
        if not os.path.isfile(path):
            return None
        try:
            return torch.load(path, map_location='cpu', weights_only=True)['embeddings']
        except Exception:  # noqa: BLE001  a damaged cache entry is recomputed and rewritten
            return None

    def save(self, key, embeddings):
        """Write atomically (temporary file + rename) so concurrent runs never read half a file."""
        if self.root is None:
            return
        os.makedirs(self.root, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix='.tmp')
        os.close(fd)
        try:
            torch.save({'embeddings': embeddings.detach().cpu().float()}, tmp)
            os.replace(tmp, os.path.join(self.root, f'{key}.pt'))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
