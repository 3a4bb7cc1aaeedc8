"""Input handling shared by the inference APIs (:class:`OVSegInferencer`, :class:`AnomalyInferencer`).

Call graph::

    check_device(device)                       'cpu' / 'cuda[:N]', clear error without CUDA
    ImageInputs(cfg, max_pixels)
      ├─ inference_pipeline_cfg(cfg)          the config's test pipeline for in-memory images
      ├─ load(source)                          ovseg.utils.image_io.load_image: paths, arrays, PIL, bytes,
      │                                        URLs of data; RGB uint8, EXIF, 16-bit, alpha; clear errors
      ├─ prepare(rgb)                          pipeline (fed BGR, as mmseg expects)
      ├─ batches(sources, batch_size)          runs of images whose network inputs share one size
      └─ collate(model, items)                 data preprocessor; results kept at the network resolution
"""
import copy

import numpy as np
import torch

from ovseg.registry import TRANSFORMS
from ovseg.utils.image_io import load_image

DEFAULT_SHORT_SIDE = 448


def check_device(device):
    """``torch.device(device)``; RuntimeError when CUDA is requested but not available."""
    device = torch.device(device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'Device {device} was requested but CUDA is not available; use '
                           f'device="cpu".')
    return device


def _type_name(transform):
    kind = transform.get('type', '')
    return kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))


def inference_pipeline_cfg(cfg, short_side=DEFAULT_SHORT_SIDE):
    """The config's test pipeline for in-memory images.

    Takes ``cfg.test_pipeline``, else ``cfg.test_dataloader.dataset.pipeline``, else the default
    ``Resize(scale=(2048, short_side), keep_ratio=True)`` (the MaskCLIP/CLIP-DINOiser protocol:
    short side ``short_side`` unless the long side would exceed 2048). Every file loader (``Load*``:
    image and annotations) is dropped and ``LoadImageFromNDArray`` put first; ``PackSegInputs``
    replaces any ``Pack*Inputs`` at the end.

    Returns:
        list[dict]: transform configs.
    """
    pipeline = cfg.get('test_pipeline')
    if not pipeline:
        pipeline = (cfg.get('test_dataloader') or {}).get('dataset', {}).get('pipeline')
    if not pipeline:
        pipeline = [dict(type='Resize', scale=(2048, short_side), keep_ratio=True)]
    # file loaders and dataset-specific packers (e.g. PackPanopticInputs, which expects annotations)
    # go; an in-memory image needs only its pixels and meta information packed
    kept = [copy.deepcopy(dict(t)) for t in pipeline
            if not _type_name(t).startswith(('Load', 'Pack'))]
    return [dict(type='LoadImageFromNDArray')] + kept + [dict(type='PackSegInputs')]


class ImageInputs:
    """Images -> a model's network inputs, with the config's test pipeline.

    Args:
        cfg (Config): the model's config (its test pipeline is used; see :func:`inference_pipeline_cfg`).
        max_pixels (int, optional): refuse images with more pixels. Default None.
    """

    def __init__(self, cfg, max_pixels=None):
        self.pipeline = [TRANSFORMS.build(t) for t in inference_pipeline_cfg(cfg)]
        self.max_pixels = max_pixels

    def load(self, source):
        """Anything :func:`ovseg.utils.image_io.load_image` accepts -> (H, W, 3) RGB uint8."""
        return load_image(source, self.max_pixels)

    def prepare(self, rgb):
        """(H, W, 3) RGB uint8 -> pipeline output (inputs (3, h, w) uint8 BGR, data_samples)."""
        results = dict(img=np.ascontiguousarray(rgb[..., ::-1]))
        for transform in self.pipeline:
            results = transform(results)
        return results

    def batches(self, sources, batch_size):
        """Yield lists of (image, pipeline output) whose network inputs share one size (at most
        ``batch_size`` images each; ``None`` puts every image of one size in one list)."""
        step = len(sources) if batch_size is None else int(batch_size)
        for start in range(0, len(sources), max(step, 1)):
            run = []
            for source in sources[start:start + step]:
                image = self.load(source)
                item = self.prepare(image)
                if run and item['inputs'].shape != run[0][1]['inputs'].shape:
                    yield run
                    run = []
                run.append((image, item))
            if run:
                yield run

    @staticmethod
    def collate(model, items):
        """Pipeline outputs of same-size images -> (inputs (B, 3, h, w), data samples) through the model's
        data preprocessor; each sample's ``ori_shape`` is the network size (results stay there, so the
        caller resizes them once, to the original size)."""
        batch = dict(inputs=[it['inputs'] for it in items], data_samples=[it['data_samples'] for it in items])
        data = model.data_preprocessor(batch, False)
        for sample in data['data_samples']:
            sample.set_metainfo(dict(ori_shape=tuple(sample.img_shape[:2])))
        return data['inputs'], data['data_samples']
