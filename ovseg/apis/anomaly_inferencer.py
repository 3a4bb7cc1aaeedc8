"""AnomalyInferencer: images + a class name (+ normal reference images) -> anomaly maps, scores, overlays.

Call graph::

    AnomalyInferencer(model cfg, checkpoint, ...)
      └─ load_config ─ check_anomaly_config ─ build_model       (the segmentation inferencer's loading policy)
    inferencer(images, class_name, references=None)
      ├─ memory(references)        few-shot heads: references through the same ImageInputs, encoded once
      │                            (cached while the same references come back)
      ├─ ImageInputs.batches       load_image ─ test pipeline (ovseg.apis.inputs, shared with OVSegInferencer)
      ├─ ImageInputs.collate ─ model.predict(inputs, samples[, memory])   maps at the network resolution
      └─ bilinear resize to the original size ─ draw_heat_map (optional overlay)

Methods that score a category batch (MuSc) get every image of the call in one batch.
"""
import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from ovseg.apis.inferencer import build_model, load_config
from ovseg.apis.inputs import ImageInputs, check_device
from ovseg.apis.visualization import draw_heat_map
from ovseg.registry import MODELS


def check_anomaly_config(cfg):
    """The classes of an anomaly config's segmentor and head; ValueError for any other config.

    Returns:
        tuple[type, type]: (segmentor class, head class).
    """
    from ovseg.models.anomaly import ZeroShotAnomalySegmentor
    kind = cfg.model.get('type')
    segmentor = MODELS.get(kind) if isinstance(kind, str) else kind
    if not (isinstance(segmentor, type) and issubclass(segmentor, ZeroShotAnomalySegmentor)):
        raise ValueError(f'{kind!r} is not an anomaly segmentor (a ZeroShotAnomalySegmentor or subclass); '
                         f'use OVSegInferencer for segmentation configs')
    head = (cfg.model.get('head') or {}).get('type')
    return segmentor, MODELS.get(head) if isinstance(head, str) else head


class AnomalyInferencer:
    """Anomaly maps and image scores of images of one object class, zero- or few-shot.

    Args:
        model (str | Config | dict): an anomaly config (WinCLIP, WinCLIP+, AnoVL, AnomalyCLIP, AdaptCLIP,
            MuSc): path, mmengine Config, or full config dict.
        checkpoint (str, optional): full-model state dict (``weights_only``, strict) or a bare open_clip
            state dict (the backbone's weights), as :class:`OVSegInferencer`.
        device (str): 'cpu' or 'cuda[:N]'. Default 'cpu'.
        random_weights (bool): drop every pretrained tag/checkpoint (nothing downloaded): a smoke test
            whose outputs are meaningless. Default False.
        cfg_options (dict, optional): config overrides (dotted keys).
        max_pixels (int, optional): refuse input images with more pixels. Default None.
        precision (str, optional): 'fp32', 'bf16' or 'fp16' autocast of the image towers; None keeps the
            config's.

    Raises:
        ValueError: not an anomaly config. WeightsUnavailableError, CheckpointMismatchError, RuntimeError
            (device): as :class:`OVSegInferencer`.
    """

    def __init__(self, model, checkpoint=None, device='cpu', random_weights=False, cfg_options=None,
                 max_pixels=None, precision=None):
        cfg = load_config(model, cfg_options)
        self.segmentor_type, self.head_type = check_anomaly_config(cfg)
        if precision is not None:
            cfg.model['precision'] = precision
        self.device = check_device(device)
        self.random_weights = bool(random_weights)
        self.model = build_model(cfg, checkpoint, random_weights).to(self.device).eval()
        self.cfg = cfg
        self.inputs = ImageInputs(cfg, max_pixels)
        self._memory = None  # (key of the references' network inputs, memory)

    @property
    def uses_references(self):
        """bool: the method scores images against normal reference images (few-shot)."""
        return hasattr(self.model, 'build_memory') and getattr(self.model.head, 'uses_references', False)

    @property
    def needs_category_batch(self):
        """bool: the method scores a batch of images of one category together (MuSc)."""
        return getattr(self.model.head, 'needs_category_batch', False)

    def memory(self, references):
        """Encode normal reference images (anything ``load_image`` accepts) into the method's memory.

        The memory of the last reference set is kept and reused while the same images come back.

        Raises:
            ValueError: the method uses no references, or no reference was given.
        """
        if not self.uses_references:
            raise ValueError(f'{self.head_type.__name__} does not use normal reference images; give a few-shot '
                             f'config (WinCLIP+, AdaptCLIP) or no references')
        sources = list(references) if isinstance(references, (list, tuple)) else [references]
        if not sources:
            raise ValueError('references is empty: give at least one normal image, or None for zero-shot')
        items = [self.inputs.prepare(self.inputs.load(source)) for source in sources]
        if len({tuple(it['inputs'].shape) for it in items}) > 1:
            raise ValueError('the reference images give network inputs of different sizes; this config keeps '
                             'the aspect ratio, so give references of one size')
        digest = hashlib.sha1()
        for it in items:
            digest.update(np.ascontiguousarray(it['inputs'].numpy()).tobytes())
        key = digest.hexdigest()
        if self._memory is None or self._memory[0] != key:
            inputs, _ = self.inputs.collate(self.model, items)
            self._memory = (key, self.model.build_memory(inputs))
        return self._memory[1]

    @torch.no_grad()
    def __call__(self, images, class_name='object', references=None, return_overlay=False, batch_size=1):
        """Score one image or a list of images of one object class.

        Args:
            images: one image or a list; anything :func:`ovseg.utils.image_io.load_image` accepts.
            class_name (str): what the images show ('bottle'); it goes into the prompts (methods with
                class-agnostic prompts ignore it). Default 'object'.
            references: normal images of the same object for few-shot methods (one or a list); None runs
                them zero-shot. Giving references to a zero-shot method is an error.
            return_overlay (bool): also draw the heat map over each image. Default False.
            batch_size (int): images per forward pass (category-batch methods take all at once).

        Returns:
            dict | list[dict]: a dict for a single image, else a list; each has ``anomaly_map`` (H, W)
            float32 at the original size, ``score`` (float image score), ``class_name`` and ``overlay``
            ((H, W + bar, 3) uint8 RGB heat map with a colour bar, or None).
        """
        if not isinstance(class_name, str) or not class_name.strip():
            raise ValueError(f'class_name must be a non-empty string, got {class_name!r}')
        if int(batch_size) < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        single = not isinstance(images, (list, tuple))
        sources = [images] if single else list(images)
        memory = None if references is None else self.memory(references)
        runs = list(self.inputs.batches(sources, None if self.needs_category_batch else int(batch_size)))
        if self.needs_category_batch and len(runs) > 1:
            raise ValueError(f'{self.head_type.__name__} scores all images together; they must give network '
                             f'inputs of one size')
        results = []
        for run in runs:
            inputs, samples = self.inputs.collate(self.model, [item for _, item in run])
            for sample in samples:
                sample.set_metainfo(dict(category=class_name.strip()))  # the segmentor's prompt class name
            kwargs = {} if memory is None else dict(memory=memory)
            for (image, _), out in zip(run, self.model.predict(inputs, samples, **kwargs)):
                results.append(self._result(image, out, class_name.strip(), return_overlay))
        return results[0] if single else results

    @staticmethod
    def _result(image, out, class_name, return_overlay):
        amap = out.anomaly_map.data.float().cpu()
        if tuple(amap.shape[-2:]) != tuple(image.shape[:2]):
            amap = F.interpolate(amap[None], size=image.shape[:2], mode='bilinear', align_corners=False)[0]
        amap = amap[0].numpy()
        return dict(anomaly_map=amap, score=float(out.pred_score), class_name=class_name,
                    overlay=draw_heat_map(image, amap) if return_overlay else None)
