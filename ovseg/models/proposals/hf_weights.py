"""Weights of the transformers-based SAM 2 / SAM 3 backends: a Hugging Face model id or a local folder.

Offline, a hub id that is not in the local cache fails with one sentence saying how to supply the weights
(as the open_clip backbones do). Weights are read from ``*.safetensors`` only (``use_safetensors=True``):
no pickle is ever unpickled. Random-weight models (tests, smoke runs, benchmarks of published sizes) are
built from a transformers config instead and need no file at all.
"""
import os
import socket

from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError

HUB_HOST = 'huggingface.co'
HUB_FILES = ('*.json', '*.safetensors', '*.txt', '*.model')  # configs, weights, tokenizer/processor files


def require_transformers(what):
    """Import transformers (>= 5) or say in one sentence how to install it."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"{what} runs on Hugging Face transformers (>= 5): "
                          f"pip install 'transformers>=5'.") from err
    if int(transformers.__version__.split('.')[0]) < 5:
        raise ImportError(f"{what} needs transformers >= 5 (found {transformers.__version__}): "
                          f"pip install -U 'transformers>=5'.")
    return transformers


def hub_reachable(timeout=3.0):
    """True when the Hugging Face hub answers (and ``HF_HUB_OFFLINE`` is not set)."""
    if os.environ.get('HF_HUB_OFFLINE', '').lower() in ('1', 'true', 'yes', 'on'):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_model_folder(name_or_path, cache_dir=None):
    """A local folder holding a transformers model: ``name_or_path`` itself, or the hub id's snapshot.

    Args:
        name_or_path (str): a folder written by ``save_pretrained`` (config.json, model.safetensors and the
            processor/tokenizer files) or a hub id such as ``'facebook/sam2.1-hiera-large'``.
        cache_dir (str, optional): Hugging Face cache folder (default: ``HF_HOME``'s).

    Raises:
        WeightsUnavailableError: a hub id that is neither cached nor downloadable.
        ValueError: ``name_or_path`` is a file (a folder or a hub id is expected).
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path):
        return name_or_path
    if os.path.isfile(name_or_path):
        raise ValueError(f'{name_or_path} is a file; give the folder that holds config.json and '
                         f'model.safetensors (written by save_pretrained) or a Hugging Face model id.')
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(name_or_path, cache_dir=cache_dir, local_files_only=True,
                                 allow_patterns=list(HUB_FILES))
    except Exception:  # noqa: BLE001  any miss in the local cache
        pass
    if not hub_reachable():
        raise WeightsUnavailableError(
            f'Model {name_or_path} is not in the local Hugging Face cache and cannot be downloaded (no '
            f'network); give a local folder saved with save_pretrained (config.json, model.safetensors and '
            f'the processor files), or copy the model into the Hugging Face cache (HF_HOME), or use random '
            f'weights for a smoke test.')
    return snapshot_download(name_or_path, cache_dir=cache_dir, allow_patterns=list(HUB_FILES))


def load_pretrained(model_cls, folder):
    """``model_cls.from_pretrained(folder)`` from safetensors only, in eval mode and frozen."""
    model = model_cls.from_pretrained(folder, use_safetensors=True)
    return model.eval().requires_grad_(False)
