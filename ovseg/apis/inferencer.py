"""OVSegInferencer: images + a vocabulary -> masks, class probabilities, pixel shares and overlays.

Call graph::

    OVSegInferencer(model cfg, checkpoint, vocabulary, ...)
      └─ load_config ─ build_model (ovseg.apis.model_loading: the one weights policy)
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
import numpy as np
import torch
import torch.nn.functional as F

from ovseg.apis.inputs import DEFAULT_SHORT_SIDE, ImageInputs, check_device, inference_pipeline_cfg  # noqa: F401
from ovseg.apis.model_loading import (CheckpointMismatchError, build_model, is_open_clip_state_dict,  # noqa: F401
                                      load_config, load_model_weights, set_text_templates, strip_weight_sources)
from ovseg.apis.prompting import PromptSession
from ovseg.apis.visualization import draw_overlay
from ovseg.text import load_vocabulary


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
        checkpoint (str, optional): a full-model state dict (``weights_only``, every key required;
            nothing else is downloaded) or a bare open_clip state dict (the backbone's weights); the
            policy is :mod:`ovseg.apis.model_loading`'s.
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
        allow_missing_frozen (bool): accept a checkpoint without the keys the model never trains (the
            frozen CLIP backbone keeps the config's weights). Default False.

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
                 cfg_options=None, max_pixels=None, sam=None, precision=None, allow_missing_frozen=False):
        cfg = load_config(model, cfg_options)
        if precision is not None:
            cfg.model['precision'] = precision
        if isinstance(cfg.model.get('background'), dict):
            cfg.model.background['optional'] = True
        if isinstance(cfg.model.get('test_cfg'), dict):  # the inferencer returns the scores (seg_logits)
            cfg.model.test_cfg['keep_seg_logits'] = True
        self.device = check_device(device)
        self.random_weights = bool(random_weights)
        self.model = build_model(cfg, checkpoint, random_weights, allow_missing_frozen).to(self.device).eval()
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
