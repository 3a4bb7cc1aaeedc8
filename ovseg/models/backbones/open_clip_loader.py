"""Build an open_clip CLIP model from a name + pretrained tag, a local checkpoint, or an inline config.

Downloads never hang an offline machine: a pretrained tag is first looked up in the local caches; only
when it is missing there and the hub answers is open_clip asked to download it. Otherwise
:class:`WeightsUnavailableError` says, in one sentence, how to supply the weights.
"""
import os
import socket
from urllib.parse import urlparse


from ovseg.utils.checkpoint import load_state_dict_file


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached locally nor downloadable."""


def _import_open_clip():
    import open_clip
    return open_clip


def build_clip_from_arch(arch):
    """Build an open_clip ``CLIP`` (or ``CustomTextCLIP``) from an inline architecture dict.

    Args:
        arch (dict): open_clip model config: ``embed_dim``, ``vision_cfg``, ``text_cfg`` and optional
            ``quick_gelu`` / ``custom_text`` (the same keys as open_clip's ``model_configs/*.json``).
    """
    open_clip = _import_open_clip()
    arch = dict(arch)
    custom_text = arch.pop('custom_text', False)
    cls = open_clip.model.CustomTextCLIP if custom_text else open_clip.model.CLIP
    return cls(**arch)


def _hub_reachable(url, timeout=3.0):
    host = urlparse(url).hostname or 'huggingface.co'
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _cached_pretrained_file(pretrained_cfg, cache_dir):
    """Return the local path of a pretrained file if it is already cached, else None."""
    hf_hub = pretrained_cfg.get('hf_hub', '')
    if hf_hub:
        from huggingface_hub import hf_hub_download
        parts = hf_hub.rstrip('/').split('/')
        repo_id = '/'.join(parts[:2])
        names = [parts[2]] if len(parts) > 2 and parts[2] else [
            'open_clip_model.safetensors', 'open_clip_pytorch_model.bin']
        for name in names:
            try:
                return hf_hub_download(repo_id, name, cache_dir=cache_dir, local_files_only=True)
            except Exception:  # noqa: BLE001  any miss in the local cache
                continue
        return None
    url = pretrained_cfg.get('url', '')
    if url:
        root = cache_dir or os.path.expanduser('~/.cache/clip')
        path = os.path.join(root, os.path.basename(url))
        return path if os.path.isfile(path) else None
    return None


def resolve_pretrained(model_name, pretrained, cache_dir=None):
    """Return a local file for ``(model_name, pretrained)``, downloading it only if the hub answers.

    Raises:
        WeightsUnavailableError: the weights are not cached and cannot be downloaded.
        ValueError: the tag is unknown to open_clip.
    """
    open_clip = _import_open_clip()
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f'open_clip has no pretrained tag {pretrained!r} for {model_name!r}; '
                         f'known tags: {known}.')
    local = _cached_pretrained_file(cfg, cache_dir)
    if local:
        return local
    url = cfg.get('url') or 'https://huggingface.co'
    if not _hub_reachable(url):
        raise WeightsUnavailableError(
            f'Pretrained weights {model_name}/{pretrained} are not in the local cache and cannot be '
            f'downloaded (no network); supply them with checkpoint=PATH (an open_clip .pt/.bin/'
            f'.safetensors file), or copy them into the Hugging Face cache (HF_HOME) or cache_dir, '
            f'or use random weights for a smoke test.')
    return open_clip.pretrained.download_pretrained(cfg, cache_dir=cache_dir)


def load_clip_weights(model, path):
    """Load an open_clip state dict file into ``model``; report key mismatches by name.

    Raises:
        KeyError: the file's keys do not match the architecture.
    """
    state = load_state_dict_file(path)
    if any(k.startswith('module.') for k in state):
        state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    open_clip = _import_open_clip()
    if hasattr(open_clip.model, 'resize_pos_embed'):
        open_clip.model.resize_pos_embed(state, model)
    model_keys = set(model.state_dict())
    missing = sorted(model_keys - set(state))
    unexpected = sorted(set(state) - model_keys)
    if missing or unexpected:
        raise KeyError(f'Checkpoint {path} does not match the CLIP architecture: '
                       f'missing keys {missing[:10]}{" ..." if len(missing) > 10 else ""} '
                       f'({len(missing)} in all), unexpected keys {unexpected[:10]}'
                       f'{" ..." if len(unexpected) > 10 else ""} ({len(unexpected)} in all).')
    model.load_state_dict(state, strict=True)
    return model


def build_open_clip(model_name='ViT-B-16', pretrained=None, checkpoint=None, arch=None, cache_dir=None):
    """Build a CLIP model in eval mode.

    Args:
        model_name (str): open_clip architecture name, e.g. 'ViT-B-16', 'RN50', 'convnext_large_d_320'.
            Ignored when ``arch`` is given.
        pretrained (str, optional): open_clip pretrained tag, e.g. 'laion2b_s34b_b88k', 'openai'.
        checkpoint (str, optional): local state-dict file for the architecture (takes precedence).
        arch (dict, optional): inline open_clip config (tiny test models).
        cache_dir (str, optional): download cache for pretrained tags.

    Returns:
        nn.Module: the open_clip model with random weights if neither ``pretrained`` nor ``checkpoint``.
    """
    open_clip = _import_open_clip()
    quick_gelu = False
    if pretrained:
        if arch is not None:
            raise ValueError('pretrained tags need model_name, not an inline arch; use checkpoint=PATH.')
        # the tag decides the activation (OpenAI weights need QuickGELU) even when a local file is given
        quick_gelu = bool(open_clip.get_pretrained_cfg(model_name, pretrained).get('quick_gelu', False))
        if checkpoint is None:
            checkpoint = resolve_pretrained(model_name, pretrained, cache_dir)
    if arch is not None:
        model = build_clip_from_arch(arch)
    else:
        if model_name not in open_clip.list_models():
            raise ValueError(f'Unknown open_clip architecture {model_name!r}; see open_clip.list_models().')
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
    if checkpoint is not None:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f'CLIP checkpoint not found: {checkpoint}')
        load_clip_weights(model, checkpoint)
    return model.eval()
