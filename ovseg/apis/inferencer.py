"""OVSegInferencer: images + a vocabulary -> masks, class probabilities, pixel shares and overlays.

Call graph::

    OVSegInferencer(model cfg, checkpoint, vocabulary, ...)
      └─ load_config ─ build_model: (random weights / full checkpoint: strip weight sources)
                                    ─ MODELS.build ─ load_model_weights
    inferencer(images, vocabulary)
      └─ ImageInputs (ovseg.apis.inputs)     load_image (RGB uint8, EXIF, 16-bit, alpha, clear
                                             errors) ─ the config's test pipeline, file loaders
                                             replaced by LoadImageFromNDArray ─ data preprocessor
      └─ model.predict                       probabilities at the network resolution
      └─ resize_scores                       to the original size once (return_logits=False:
                                             never; the mask is computed in row strips)
      └─ argmax ─ shares ─ overlay
    inferencer.prompt(image, points, point_labels, boxes, vocabulary)   (needs ``sam``)
      └─ PromptSession (ovseg.apis.prompting)   SAM masks labelled by mask-pooled dense CLIP features
"""
import copy
import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import print_log

from ovseg.apis.inputs import DEFAULT_SHORT_SIDE, ImageInputs, check_device, inference_pipeline_cfg  # noqa: F401
from ovseg.apis.prompting import PromptSession
from ovseg.apis.visualization import draw_overlay
from ovseg.registry import MODELS  # importing ovseg registers its modules there
from ovseg.text import load_vocabulary
from ovseg.utils.checkpoint import load_state_dict_file


class CheckpointMismatchError(KeyError):
    """A checkpoint's keys or shapes do not match the model; the message names them."""

    def __str__(self):
        # KeyError quotes its message; this error's message is a sentence.
        return str(self.args[0]) if self.args else ''


def load_config(model, cfg_options=None):
    """Config path, mmengine Config, full config dict or model dict -> a new mmengine Config.

    Args:
        model (str | os.PathLike | Config | dict): a config file; a Config; a dict with a
            ``model`` key (a full config); or a model dict (with ``type``), which gets the default
            test pipeline.
        cfg_options (dict, optional): overrides merged by ``Config.merge_from_dict`` (dotted keys).

    Returns:
        Config: a copy; the argument is never modified.
    """
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise FileNotFoundError(f'Config file not found: {model}')
        cfg = Config.fromfile(str(model))
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


def _mismatch_message(path, missing, unexpected):
    def listed(keys):
        return f'{keys[:10]}{" ..." if len(keys) > 10 else ""} ({len(keys)} in all)'

    return (f'Checkpoint {path} does not match the model: missing keys {listed(missing)}, '
            f'unexpected keys {listed(unexpected)}.')


def load_model_weights(model, path, state=None):
    """Load a full-model state dict (``weights_only``) strictly, naming mismatched keys.

    Args:
        model (nn.Module): the built model.
        path (str): .pth/.pt/.safetensors file; 'state_dict'/'model' wrappers and 'module.' prefixes
            are removed.
        state (dict, optional): the file's state dict when already read (avoids a second read).

    Raises:
        CheckpointMismatchError: missing or unexpected keys, or shape mismatches (all named).
    """
    state = load_state_dict_file(path) if state is None else state
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointMismatchError(_mismatch_message(path, missing, unexpected))
    wrong = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
             for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointMismatchError(f'Checkpoint {path} has tensors of the wrong shape: '
                                      f'{wrong[:10]}{" ..." if len(wrong) > 10 else ""}.')
    model.load_state_dict(state, strict=True)


def build_model(cfg, checkpoint=None, random_weights=False):
    """Build ``cfg.model`` (in place edits of ``cfg``) and load ``checkpoint``.

    A bare open_clip state dict becomes the backbone's ``checkpoint`` (no pretrained download); any
    other file is a full-model state dict: weight sources are stripped, then it is loaded strictly.

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
        strip_weight_sources(cfg.model, disable_text_cache=False)
    model = MODELS.build(cfg.model)
    if state is not None:
        load_model_weights(model, checkpoint, state)
    return model


def _linear_weights(size_in, size_out):
    """(size_out, size_in) weights of 1-D linear resizing as F.interpolate(align_corners=False)."""
    eye = torch.eye(size_in)[None]
    return F.interpolate(eye, size=size_out, mode='linear', align_corners=False)[0].T.contiguous()


def _argmax_in_strips(probs, size, strip_bytes):
    """argmax of bilinearly resized (K, h, w) scores, computed a strip of output rows at a time.

    Bilinear resizing is separable: out = Wy @ probs @ Wx^T, so a strip of rows needs only Wy's
    rows and never the full (K, H, W) tensor. Peak extra memory is about ``strip_bytes``.
    """
    height, width = size
    num_classes = probs.shape[0]
    wy = _linear_weights(probs.shape[1], height)
    wx_t = _linear_weights(probs.shape[2], width).T
    mask = torch.empty((height, width), dtype=torch.int64)
    rows = max(1, int(strip_bytes) // (4 * num_classes * width))
    for top in range(0, height, rows):
        strip = (wy[top:top + rows] @ probs) @ wx_t
        mask[top:top + rows] = strip.argmax(dim=0)
    return mask


def resize_scores(probs, size, return_scores=True, strip_bytes=1 << 25):
    """Resize (K, h, w) scores to the original image size and take the per-pixel argmax.

    Args:
        probs (Tensor): (K, h, w) float32 scores on the CPU.
        size (tuple[int, int]): (H, W).
        return_scores (bool): return the (K, H, W) resized scores (one full-resolution copy).
            When False they are never built; the mask comes from :func:`_argmax_in_strips`.
            Default True.
        strip_bytes (int): memory for one strip of the strip-wise argmax. Default 32 MiB.

    Returns:
        tuple: (K, H, W) float32 ndarray or None, and the (H, W) int64 ndarray mask.
    """
    if tuple(probs.shape[-2:]) == tuple(size):
        full = probs
    elif return_scores:
        full = F.interpolate(probs[None], size=tuple(size), mode='bilinear', align_corners=False)[0]
    else:
        return None, _argmax_in_strips(probs, size, strip_bytes).numpy()
    mask = full.argmax(dim=0).numpy()
    return (full.numpy() if return_scores else None), mask


class OVSegInferencer:
    """Open-vocabulary segmentation of images with any ovseg segmentor config.

    Args:
        model (str | Config | dict): config path, mmengine Config, full config dict (``model``
            plus a ``test_pipeline`` or ``test_dataloader``), or a model dict (default pipeline:
            short side 448).
        checkpoint (str, optional): a full-model state dict (``weights_only``, loaded strictly;
            nothing else is downloaded) or a bare open_clip state dict (the backbone's weights).
        device (str): 'cpu' or 'cuda[:N]'. Default 'cpu'.
        vocabulary: default vocabulary (anything :func:`ovseg.text.load_vocabulary` accepts); None
            keeps the config's.
        random_weights (bool): drop every pretrained tag/checkpoint from the model config so
            nothing is downloaded: an explicit smoke-test mode whose outputs are meaningless.
            Default False.
        cfg_options (dict, optional): config overrides (dotted keys).
        max_pixels (int, optional): refuse input images with more pixels. Default None.
        sam (nn.Module | dict, optional): SAM for :meth:`prompt` (a module, or a config such as
            ``dict(type='SAMPredictor', arch='vit_b', checkpoint='sam_vit_b_01ec64.pth')`` or
            ``dict(type='SAM2Predictor', pretrained='facebook/sam2.1-hiera-large')``); built
            on first use. Default None: :meth:`prompt` is unavailable until :meth:`set_sam`.
        precision (str, optional): 'fp32', 'bf16' or 'fp16' (CUDA) autocast of the model's
            networks (similarities, softmax and rules stay float32); None keeps the config's.

    Raises:
        WeightsUnavailableError: pretrained weights are neither cached nor downloadable (its
            message is one sentence saying how to supply them).
        CheckpointMismatchError: ``checkpoint`` does not fit the model.
        VocabularyError: invalid ``vocabulary``.

    A class named like the config's background rule (``model.background.class_name``, default
    'background') gets that rule; vocabularies without it are allowed (the rule is made optional).
    When the config defines no background rule, 'background' is an ordinary class scored by its
    text embedding like any other.
    """

    def __init__(self, model, checkpoint=None, device='cpu', vocabulary=None, random_weights=False,
                 cfg_options=None, max_pixels=None, sam=None, precision=None):
        cfg = load_config(model, cfg_options)
        if precision is not None:
            cfg.model['precision'] = precision
        if isinstance(cfg.model.get('background'), dict):
            cfg.model.background['optional'] = True
        self.device = check_device(device)
        self.random_weights = bool(random_weights)
        self.model = build_model(cfg, checkpoint, random_weights).to(self.device).eval()
        self.cfg = cfg
        self.inputs = ImageInputs(cfg, max_pixels)
        default = vocabulary if vocabulary is not None else cfg.model.get('vocabulary')
        self.vocabulary = load_vocabulary(default) if default is not None else None
        self._active = None
        self._use_vocabulary(None)
        self._sam, self._session = sam, None

    @property
    def pipeline(self):
        """list: the test pipeline's transforms (:class:`ImageInputs`)."""
        return self.inputs.pipeline

    @property
    def max_pixels(self):
        """int | None: images with more pixels are refused."""
        return self.inputs.max_pixels

    @property
    def class_names(self):
        """list[str]: class names of the default vocabulary."""
        if self.vocabulary is None:
            return list(self.model.class_names)
        return list(self.vocabulary.names)

    def set_vocabulary(self, vocabulary):
        """Change the default vocabulary (validated now; text embeddings are computed lazily)."""
        self.vocabulary = load_vocabulary(vocabulary)
        self._use_vocabulary(None)

    def _use_vocabulary(self, vocabulary):
        """Make ``vocabulary`` (or the default) the model's; a no-op when it already is."""
        vocab = load_vocabulary(vocabulary) if vocabulary is not None else self.vocabulary
        if vocab is not None and vocab != self._active:
            self.model.set_vocabulary(vocab)
            self._active = vocab

    def _refines_at_original_size(self):
        refiner = getattr(self.model, 'sam_refiner', None)
        return getattr(refiner, 'resolution', None) == 'original'

    def _predict(self, run):
        """(image, pipeline output) pairs of same-size inputs -> (K, h, w) float32 CPU probabilities each.

        Results stay at the network resolution (``ImageInputs.collate``); __call__ upsamples once, to bound
        memory. A SAM refinement on the original image (Trident's) gets the image and its size instead.
        """
        inputs, samples = self.inputs.collate(self.model, [item for _, item in run])
        if self._refines_at_original_size():
            for sample, (image, _) in zip(samples, run):
                sample.set_metainfo(dict(ori_shape=tuple(image.shape[:2]), ori_img=image))
        outputs = self.model.predict(inputs, samples)
        return [out.seg_logits.data.float().cpu() for out in outputs]

    def _result(self, image, probs, names, return_logits, return_overlay):
        """Network-resolution probabilities -> the result dict at the image's original size."""
        logits, mask = resize_scores(probs, image.shape[:2], return_logits)
        counts = np.bincount(mask.ravel(), minlength=len(names))
        shares = {name: float(c) / mask.size for name, c in zip(names, counts)}
        overlay = draw_overlay(image, mask, names, shares) if return_overlay else None
        return dict(mask=mask, logits=logits, class_names=list(names), shares=shares,
                    overlay=overlay)

    @torch.no_grad()
    def __call__(self, images, vocabulary=None, return_overlay=False, batch_size=1,
                 return_logits=True):
        """Segment one image or a list of images.

        Args:
            images: one image or a list; anything :func:`ovseg.utils.image_io.load_image` accepts.
            vocabulary: vocabulary for this call only (the default is restored on the next call
                without one); None uses the default. Text embeddings are cached, so switching back
                is cheap.
            return_overlay (bool): also draw the overlay. Default False.
            batch_size (int): images per forward pass (consecutive images of the same network
                input size are batched). Default 1.
            return_logits (bool): return the (K, H, W) probabilities. False never materialises
                them at full resolution (the mask is computed in row strips), for very large
                images. Default True.

        Returns:
            dict | list[dict]: a dict for a single image, else a list; each has ``mask`` (H, W)
            int64 class indices at the original size, ``logits`` (K, H, W) float32 class
            probabilities (softmax after the model's test-time rules, bilinearly resized; None if
            not requested), ``class_names`` (K names), ``shares`` (name -> fraction of pixels, 0.0
            for absent classes) and ``overlay`` ((H, W, 3) uint8 RGB, or None).
        """
        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        if int(batch_size) < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self._use_vocabulary(vocabulary)
        names = list(self.model.class_names)
        results = []
        for run in self.inputs.batches(sources, int(batch_size)):
            probs = self._predict(run)
            for (image, _), p in zip(run, probs):
                results.append(self._result(image, p, names, return_logits, return_overlay))
        return results[0] if single else results

    def set_sam(self, sam):
        """Use ``sam`` (SAMPredictor, SAM2Predictor or a config) for :meth:`prompt` from now on."""
        self._sam, self._session = sam, None

    @torch.no_grad()
    def prompt(self, image, points=None, point_labels=None, boxes=None, vocabulary=None,
               return_overlay=False):
        """SAM masks for point/box prompts on one image, labelled by CLIP from a vocabulary.

        The SAM image embedding and the dense CLIP features are computed once per image and
        reused while the same pixels are prompted again (clicks in an interactive session).

        Args:
            image: anything :func:`ovseg.utils.image_io.load_image` accepts.
            points (array-like, optional): (P, 2) xy pixel coordinates; all points form one
                prompt (one mask).
            point_labels (array-like, optional): (P,) 1 = positive (default), 0 = negative.
            boxes (array-like, optional): (M, 4) xyxy pixel boxes, one mask each; at most one box
                can be combined with points.
            vocabulary: vocabulary for this call only (as in :meth:`__call__`).
            return_overlay (bool): also draw the labelled masks over the image. Default False.

        Returns:
            dict: ``masks`` (M, H, W) bool, ``labels`` (M,) class indices, ``label_names``,
            ``scores`` (M,) CLIP probability of each label, ``class_probs`` (M, K),
            ``mask_scores`` (M,) SAM's predicted IoU, ``class_names`` (K), ``low_res_logits``
            (M, 1, 256, 256) SAM logits (pass back through the prompter to refine) and
            ``overlay`` ((H, W, 3) uint8 RGB, or None).

        Raises:
            RuntimeError: no SAM was given. ValueError: no prompt, bad labels, a point outside
                the image, an empty box, points with several boxes.
        """
        if self._sam is None:
            raise RuntimeError('Point/box prompts need SAM: give OVSegInferencer(..., sam=dict('
                               "type='SAMPredictor', arch='vit_b', checkpoint=PATH)) or call "
                               'set_sam().')
        if self._session is None:
            self._session = PromptSession(self.model, self._sam)
        rgb = self.inputs.load(image)
        self._use_vocabulary(vocabulary)
        return self._session.result(rgb, points, point_labels, boxes, return_overlay)
