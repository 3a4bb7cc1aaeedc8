"""Building a model from its config with the weights it should have: one policy for every entry point.

``OVSegInferencer``, ``AnomalyInferencer``, ``tools/test.py`` and the analysis tools load configs and
checkpoints through this module:

* ``load_config``: a path, Config or dict -> a new Config (config files are looked up as
  :func:`ovseg.configs.find_config` says, so a repository path works from any folder);
* ``random_weights``: every pretrained tag and checkpoint path is removed (nothing is downloaded or
  read) and the run says so;
* a bare open_clip CLIP state dict becomes the backbone's weights (the rest as the config says);
* any other checkpoint is a full-model state dict, read with ``torch.load(weights_only=True)``: by default
  it must hold every key of the model, with the right shapes (the config's weight sources are removed,
  since it replaces them). ``allow_missing_frozen=True`` (``tools/test.py --allow-missing-frozen``) accepts
  a checkpoint without the keys the model never trains (frozen parameters, buffers of frozen modules,
  e.g. the CLIP backbone): those keep the config's weights, and the log names how many.
  Unexpected keys, missing keys and shape mismatches raise :class:`CheckpointMismatchError` naming them.
* every load ends with one line naming the file and what it filled.
"""
import copy
import logging
import os

from mmengine.config import Config
from mmengine.logging import print_log

from ovseg.configs import find_config
from ovseg.registry import MODELS
from ovseg.utils.checkpoint import load_state_dict_file


class CheckpointMismatchError(KeyError):
    """A checkpoint's keys or shapes do not match the model; the message names them."""

    def __str__(self):
        # KeyError quotes its message; this error's message is a sentence.
        return str(self.args[0]) if self.args else ''


def load_config(model, cfg_options=None):
    """Config path, mmengine Config, full config dict or model dict -> a new mmengine Config.

    Args:
        model (str | os.PathLike | Config | dict): a config file or name (:func:`ovseg.configs.find_config`:
            a repository path such as 'configs/maskclip/maskclip_vit-b16_ade150.py' works from any
            folder); a Config; a dict with a ``model`` key (a full config); or a model dict (with
            ``type``), which gets the default test pipeline.
        cfg_options (dict, optional): overrides merged by ``Config.merge_from_dict`` (dotted keys).

    Returns:
        Config: a copy; the argument is never modified.
    """
    if isinstance(model, (str, os.PathLike)):
        cfg = Config.fromfile(find_config(model))
    elif isinstance(model, Config):
        cfg = copy.deepcopy(model)
    elif isinstance(model, dict):
        full = copy.deepcopy(dict(model))
        cfg = Config(full if 'model' in full else dict(model=full))
    else:
        raise TypeError(f'model must be a config path, an mmengine Config or a dict, '
                        f'got {type(model).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not isinstance(cfg.get('model'), dict) or 'type' not in cfg.model:
        raise ValueError('The config has no `model` dict with a `type`.')
    return cfg


def _keep_quick_gelu(node):
    """Switch ``node`` to the '-quickgelu' architecture when its pretrained tag implies QuickGELU.

    Without its tag, open_clip would build e.g. OpenAI ViT-B-16 with GELU instead of the QuickGELU
    its weights were trained with, and a full-model checkpoint would silently give other outputs.
    """
    name, tag = node.get('model_name'), node.get('pretrained')
    if not (isinstance(name, str) and isinstance(tag, str)) or name.endswith('-quickgelu'):
        return
    import open_clip
    if open_clip.get_pretrained_cfg(name, tag).get('quick_gelu', False):
        if f'{name}-quickgelu' not in open_clip.list_models():
            raise ValueError(f'{name}/{tag} needs QuickGELU but open_clip has no {name}-quickgelu '
                             f'architecture; keep the pretrained tag or use a backbone checkpoint.')
        node['model_name'] = f'{name}-quickgelu'


def strip_weight_sources(model_cfg, disable_text_cache=True):
    """Remove pretrained tags, checkpoint paths and 'Pretrained' init_cfgs from a model config.

    The config is edited in place. Nothing is then downloaded or read while building: for
    random-weight smoke runs, and for full-model checkpoints, which replace every weight anyway
    (they are loaded strictly). Architectures that the tag switched to QuickGELU keep it through
    their '-quickgelu' name.

    Args:
        model_cfg (dict): the ``model`` config.
        disable_text_cache (bool): also set every ``OVTextClassifier.cache_dir`` to None
            (embeddings of random weights are worthless to keep). Default True.

    Returns:
        list[str]: dotted names of the removed entries (for the log).
    """
    removed = []

    def walk(node, prefix):
        if isinstance(node, dict):
            _keep_quick_gelu(node)
            for key in ('pretrained', 'checkpoint'):
                if isinstance(node.get(key), str):
                    removed.append(f'{prefix}{key}')
                    node.pop(key)
            init_cfg = node.get('init_cfg')
            if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
                removed.append(f'{prefix}init_cfg')
                node.pop('init_cfg')
            if disable_text_cache and node.get('type') == 'OVTextClassifier':
                node['cache_dir'] = None
            for key, value in node.items():
                walk(value, f'{prefix}{key}.')
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f'{prefix}{i}.')

    walk(model_cfg, 'model.')
    return removed


def set_text_templates(node, templates):
    """Set ``templates`` on every ``OVTextClassifier`` config inside ``node`` (in place).

    Benchmarks use ``'single'``: the per-image cost does not depend on the template set, while the
    one-off text encoding of 80 templates takes minutes on a CPU.
    """
    if isinstance(node, dict):
        if node.get('type') == 'OVTextClassifier':
            node['templates'] = templates
        for value in node.values():
            set_text_templates(value, templates)
    elif isinstance(node, (list, tuple)):
        for value in node:
            set_text_templates(value, templates)


def is_open_clip_state_dict(state):
    """True for a bare open_clip CLIP state dict (keys 'visual.*', 'transformer.*', ...)."""
    keys = [k[len('module.'):] if k.startswith('module.') else k for k in state]
    has_visual = any(k.startswith('visual.') for k in keys)
    return has_visual and not any(k.startswith('backbone.') for k in keys)


def frozen_keys(model):
    """State-dict keys the model never trains: frozen parameters and buffers of fully frozen modules."""
    keys = {name for name, param in model.named_parameters() if not param.requires_grad}
    for name, _ in model.named_buffers():
        owner = model.get_submodule(name.rpartition('.')[0]) if '.' in name else model
        params = list(owner.parameters())
        if params and not any(p.requires_grad for p in params):
            keys.add(name)
    return keys


def _listed(keys, limit=10):
    return f'{keys[:limit]}{" ..." if len(keys) > limit else ""} ({len(keys)} in all)'


def load_model_weights(model, path, state=None, allow_missing_frozen=False, logger='current'):
    """Load a full-model state dict (``weights_only``) under the module's policy, naming mismatches.

    Args:
        model (nn.Module): the built model (unwrapped).
        path (str): .pth/.pt/.safetensors file; 'state_dict'/'model' wrappers and 'module.' prefixes
            are removed.
        state (dict, optional): the file's state dict when already read (avoids a second read).
        allow_missing_frozen (bool): accept a checkpoint without keys the model never trains (they keep
            the weights the model was built with). Default False: every key must be there.
        logger (str | logging.Logger): where the confirmation line goes (mmengine's ``print_log``).

    Returns:
        list[str]: the frozen keys the checkpoint omitted (empty unless ``allow_missing_frozen``).

    Raises:
        CheckpointMismatchError: unexpected keys, missing keys (trainable ones, or any when frozen
            keys may not be missing) or shape mismatches, all named.
    """
    state = load_state_dict_file(path) if state is None else state
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    omitted = []
    if allow_missing_frozen and missing:
        frozen = frozen_keys(model)
        omitted = [k for k in missing if k in frozen]
        missing = [k for k in missing if k not in frozen]
    wrong = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
             for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong:
        hint = (' Keys the model never trains (the frozen CLIP backbone) may be left out with '
                'allow_missing_frozen=True (tools/test.py --allow-missing-frozen).'
                if missing and not allow_missing_frozen else '')
        raise CheckpointMismatchError(f'Checkpoint {path} does not match the model: missing keys '
                                      f'{_listed(missing)}, unexpected keys {_listed(unexpected)}, '
                                      f'shape mismatches {_listed(wrong)}.{hint}')
    model.load_state_dict(state, strict=not omitted)
    print_log(f'Loaded {len(state)} tensors from {path}'
              + (f'; {len(omitted)} frozen keys keep the config\'s weights' if omitted else
                 ' (every weight of the model)'), logger=logger)
    return omitted


def strip_provided_parts(model_cfg, state):
    """Remove the weight sources of the parts whose weights ``state`` holds (its top-level key prefixes):
    they are replaced anyway, so nothing is downloaded for them. Parts it lacks keep their sources (the
    frozen backbone of a checkpoint with the trained parts only, under ``allow_missing_frozen``)."""
    parts = {key[len('module.'):] if key.startswith('module.') else key for key in state}
    for part in {key.split('.', 1)[0] for key in parts}:
        if isinstance(model_cfg.get(part), dict):
            strip_weight_sources(model_cfg[part], disable_text_cache=False)


def build_model(cfg, checkpoint=None, random_weights=False, allow_missing_frozen=False):
    """Build ``cfg.model`` (in place edits of ``cfg``) and load ``checkpoint`` (module docstring).

    Returns:
        nn.Module: the model (on the CPU, in train mode as built).
    """
    if random_weights and checkpoint is not None:
        raise ValueError('random_weights=True and a checkpoint exclude each other; give one.')
    state = load_state_dict_file(checkpoint) if checkpoint is not None else None
    if random_weights:
        removed = strip_weight_sources(cfg.model)
        print_log(f'random_weights=True: the model has RANDOM weights (removed '
                  f'{removed or "nothing"}); outputs are meaningless: a smoke test only.',
                  logger='current', level=logging.WARNING)
    elif state is not None and is_open_clip_state_dict(state):
        if 'backbone' not in cfg.model:
            raise ValueError(f'{checkpoint} is an open_clip state dict but the model has no '
                             f'backbone.')
        _keep_quick_gelu(cfg.model.backbone)
        cfg.model.backbone.pop('pretrained', None)
        cfg.model.backbone['checkpoint'] = str(checkpoint)
        state = None
    elif state is not None:
        strip_provided_parts(cfg.model, state)
    model = MODELS.build(cfg.model)
    if state is not None:
        load_model_weights(model, checkpoint, state, allow_missing_frozen)
    return model
