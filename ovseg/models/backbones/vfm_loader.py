"""Vision foundation models (DINO, DINOv2, MAE) built from timm, with their weights.

Every model is a timm ``VisionTransformer``; the table :data:`VFM_ARCHS` maps the names the originals
load with ``torch.hub`` (``dino_vitb8``, ``dinov2_vitb14_reg``, ...) to the timm architecture, its
pretrained tag and the positional-embedding resize of the original code (:mod:`.pos_embed`):

- DINO (facebookresearch/dino ``VisionTransformer.interpolate_pos_encoding``) and DINOv2 without
  registers (``interpolate_offset=0.1``): bicubic with the scale factor ``(g + 0.1) / g0``
  ('bicubic_scale');
- DINOv2 with registers (``interpolate_antialias=True, interpolate_offset=0.0``): bicubic to the size,
  antialiased, which is timm's own resampling ('timm');
- MAE (facebookresearch/mae ``util/pos_embed.interpolate_pos_embed``, applied when the checkpoint is
  loaded at another input size): bicubic to the size ('bicubic').

Weights come from a local file (``checkpoint``: the official ``.pth`` files in their own key names, or a
timm / safetensors state dict; converted with timm's ``checkpoint_filter_fn``) or from the timm tag
(``pretrained=True``), looked up in the Hugging Face cache first and downloaded only when the hub
answers; otherwise :class:`WeightsUnavailableError` says how to supply them. Nothing runs
``torch.hub`` code.
"""
import os

from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError, _hub_reachable
from ovseg.utils.checkpoint import load_state_dict_file

# hub name -> (timm architecture, timm pretrained tag, positional-embedding mode)
VFM_ARCHS = {
    'dino_vits16': ('vit_small_patch16_224', 'dino', 'bicubic_scale'),
    'dino_vits8': ('vit_small_patch8_224', 'dino', 'bicubic_scale'),
    'dino_vitb16': ('vit_base_patch16_224', 'dino', 'bicubic_scale'),
    'dino_vitb8': ('vit_base_patch8_224', 'dino', 'bicubic_scale'),
    'dinov2_vits14': ('vit_small_patch14_dinov2', 'lvd142m', 'bicubic_scale'),
    'dinov2_vitb14': ('vit_base_patch14_dinov2', 'lvd142m', 'bicubic_scale'),
    'dinov2_vits14_reg': ('vit_small_patch14_reg4_dinov2', 'lvd142m', 'timm'),
    'dinov2_vitb14_reg': ('vit_base_patch14_reg4_dinov2', 'lvd142m', 'timm'),
    'mae_vitb16': ('vit_base_patch16_224', 'mae', 'bicubic'),
}


def resolve_vfm(name):
    """A hub name of :data:`VFM_ARCHS` or a timm 'arch.tag' -> (timm arch, tag or None, pos mode or None)."""
    if name in VFM_ARCHS:
        return VFM_ARCHS[name]
    arch, _, tag = name.partition('.')
    import timm
    if arch not in timm.list_models():
        raise ValueError(f'Unknown vision foundation model {name!r}: use one of {sorted(VFM_ARCHS)} or a timm '
                         f'ViT name (timm.list_models()).')
    return arch, tag or None, None


def convert_vfm_state_dict(state, model):
    """An official DINO / DINOv2 / MAE state dict (or a timm one) -> the timm model's key names.

    DINOv2's ``register_tokens``, ``mask_token`` and the class-token position are converted by timm's
    ``checkpoint_filter_fn``; an MAE checkpoint's decoder keys and a classifier head the model lacks
    are dropped.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(('decoder', 'mask_token_dec'))}
    state = checkpoint_filter_fn(state, model)
    keys = set(model.state_dict())
    return {k: v for k, v in state.items() if k in keys or not k.startswith(('head.', 'fc_norm.'))}


def load_vfm_weights(model, path):
    """Load a local VFM checkpoint into a timm model; key mismatches are reported by name.

    Raises:
        KeyError: the file's keys do not match the architecture.
    """
    state = convert_vfm_state_dict(load_state_dict_file(path), model)
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    if missing or unexpected:
        raise KeyError(f'Checkpoint {path} does not match the VFM architecture: missing keys {missing[:10]}'
                       f'{" ..." if len(missing) > 10 else ""} ({len(missing)} in all), unexpected keys '
                       f'{unexpected[:10]}{" ..." if len(unexpected) > 10 else ""} ({len(unexpected)} in all).')
    return model


def resolve_vfm_pretrained(arch, tag, cache_dir=None):
    """Local file of timm's ``arch.tag`` weights, downloaded only when the Hugging Face hub answers.

    Raises:
        WeightsUnavailableError: not cached and no network.
        ValueError: timm has no such pretrained tag.
    """
    import timm
    from huggingface_hub import hf_hub_download
    name = f'{arch}.{tag}' if tag else arch
    if name not in timm.list_pretrained(name):
        raise ValueError(f'timm has no pretrained weights {name!r}; see timm.list_pretrained({arch + "*"!r}).')
    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, 'hf_hub_id', None)
    if not repo:
        raise ValueError(f'timm weights {name!r} are not on the Hugging Face hub; supply checkpoint=PATH.')
    files = ('model.safetensors', 'pytorch_model.bin', 'open_clip_pytorch_model.bin')
    for filename in files:
        try:
            return hf_hub_download(repo, filename, cache_dir=cache_dir, local_files_only=True)
        except Exception:  # noqa: BLE001  any miss in the local cache
            continue
    if os.environ.get('HF_HUB_OFFLINE') == '1' or not _hub_reachable('https://huggingface.co'):
        raise WeightsUnavailableError(
            f'Pretrained weights {name} are not in the local cache and cannot be downloaded (no network); '
            f'supply them with checkpoint=PATH (the official .pth or a timm state dict), or copy them into the '
            f'Hugging Face cache (HF_HOME) or cache_dir, or use random weights for a smoke test.')
    return hf_hub_download(repo, files[0], cache_dir=cache_dir)


def build_vfm(model_name='dino_vitb8', pretrained=False, checkpoint=None, model_kwargs=None, cache_dir=None):
    """A timm ViT of a vision foundation model in eval mode (module docstring).

    Args:
        model_name (str): hub name (:data:`VFM_ARCHS`) or timm 'arch[.tag]'.
        pretrained (bool | str): load timm's weights (cache, else download when online): True for the name's
            tag, or a timm tag ('dino', 'lvd142m', 'mae'). Default False.
        checkpoint (str, optional): local weights file (takes precedence over ``pretrained``).
        model_kwargs (dict, optional): timm architecture overrides (e.g. ``depth=4`` for tests).
        cache_dir (str, optional): Hugging Face cache folder.

    Returns:
        tuple[nn.Module, str | None]: the model (random weights unless a source is given) and the
        original's positional-embedding mode (None: timm's own).
    """
    import timm
    arch, tag, pos_mode = resolve_vfm(model_name)
    kwargs = dict(num_classes=0)
    kwargs.update(model_kwargs or {})
    model = timm.create_model(arch, pretrained=False, **kwargs)
    if checkpoint is not None:
        load_vfm_weights(model, checkpoint)
    elif pretrained:
        tag = pretrained if isinstance(pretrained, str) else tag
        load_vfm_weights(model, resolve_vfm_pretrained(arch, tag, cache_dir))
    model.requires_grad_(False)
    return model.eval(), pos_mode
