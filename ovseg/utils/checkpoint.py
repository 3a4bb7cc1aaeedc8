"""Checkpoint reading that never unpickles arbitrary objects (``torch.load(weights_only=True)``)."""
import os

import torch


def load_checkpoint_file(path, map_location='cpu'):
    """Load a checkpoint with ``weights_only=True`` (or safetensors); return the loaded object.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file cannot be read as a weights-only checkpoint (the message says why).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(str(path), device=str(map_location))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001  re-raised with the file named
        raise RuntimeError(f'Cannot load {path} with torch.load(weights_only=True): {err}. ovseg only reads '
                           f'weights-only checkpoints (tensors, numbers, strings, containers).') from err


def load_state_dict_file(path, map_location='cpu'):
    """Load a file and return its state dict (unwrapping 'state_dict' / 'model' / 'model_state_dict')."""
    obj = load_checkpoint_file(path, map_location)
    for key in ('state_dict', 'model_state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RuntimeError(f'{path} does not hold a state dict of tensors.')
    return obj
