"""mmseg segmentor wrapper for zero-shot anomaly heads (WinCLIP per image, MuSc per category batch)."""
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample

from ovseg.models.utils.precision import PrecisionMixin, upcast
from ovseg.registry import MODELS


def pack_anomaly_results(maps, scores, data_samples, input_shape, threshold=None):
    """(B, H, W) maps and (B,) scores -> SegDataSamples.

    Per image the map is cropped to ``img_shape`` (batch padding), resized bilinearly to ``ori_shape``
    and stored as ``anomaly_map`` (and ``seg_logits``), PixelData (1, h0, w0) float32; the image score
    is ``pred_score`` (0-d float32 tensor). With a ``threshold``, ``pred_sem_seg`` holds the binary
    mask ``map >= threshold`` (for mmseg's visualiser).
    """
    samples = data_samples if data_samples is not None else [None] * maps.shape[0]
    results = []
    for amap, score, sample in zip(maps, scores, samples):
        meta = dict(sample.metainfo) if sample is not None else {}
        meta.setdefault('img_shape', tuple(input_shape))
        meta.setdefault('ori_shape', meta['img_shape'])
        h, w = meta['img_shape'][:2]
        amap = amap[None, :h, :w].float()
        ori = tuple(meta['ori_shape'][:2])
        if tuple(amap.shape[-2:]) != ori:
            amap = F.interpolate(amap[None], size=ori, mode='bilinear', align_corners=False)[0]
        out = sample if sample is not None else SegDataSample(metainfo=meta)
        out.set_data({'anomaly_map': PixelData(data=amap), 'seg_logits': PixelData(data=amap),
                      'pred_score': score.detach().float().reshape(())})
        if threshold is not None:
            out.pred_sem_seg = PixelData(data=(amap >= threshold).long())
        results.append(out)
    return results


@MODELS.register_module()
class ZeroShotAnomalySegmentor(PrecisionMixin, BaseSegmentor):
    """Anomaly map + image score per test image from a CLIP backbone and a zero-shot anomaly head.

    Call graph::

        predict(inputs, data_samples)
          ├─ class_names(data_samples)        metainfo 'category' -> prompt name (``class_names`` map)
          ├─ head(backbone, inputs, names)    WinCLIPHead: any batch; MuScHead: one whole category
          └─ pack_anomaly_results(...)        anomaly_map (1, h0, w0), pred_score, optional pred_sem_seg

    Heads with ``needs_category_batch`` (MuSc) score each image against the other images of the
    batch, so the test dataloader must deliver every test image of a category as one batch:
    ``batch_sampler=dict(type='CategoryBatchSampler')`` (``ovseg.datasets.anomaly``) groups the
    dataset indices by their ``category`` field (single process). A batch mixing categories raises.

    Precision: the head runs under the autocast of ``precision``; the heads run their CLIP image towers
    in it and keep the text embeddings, L2 normalisation, similarities, softmax, aggregation, smoothing
    and MuSc's scoring in float32 (:mod:`ovseg.models.utils.precision`). Maps and scores are float32.

    Args:
        backbone (dict): ``OpenCLIPBackbone`` config (a ViT for WinCLIP and MuSc).
        head (dict): ``WinCLIPHead`` or ``MuScHead`` config.
        class_names (dict, optional): category -> object name put into the prompts (e.g.
            ``{'pcb1': 'printed circuit board'}``); unmapped categories use their name with '_' as ' '.
        default_class_name (str): name for images without a category. Default 'object'.
        test_cfg (dict, optional): ``threshold`` (float) adds a binary ``pred_sem_seg``.
        precision (str): inference precision of the image towers, 'fp32' (default), 'bf16' or 'fp16'
            (meant for CUDA); can be changed later through the ``precision`` attribute.
        data_preprocessor (dict): ``SegDataPreProcessor`` with CLIP mean/std, RGB.
    """

    def __init__(self, backbone, head, class_names=None, default_class_name='object', test_cfg=None,
                 precision='fp32', data_preprocessor=None, init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(head)
        self.name_map = dict(class_names or {})
        self.default_class_name = default_class_name
        self.test_cfg = dict(test_cfg or {})
        self.precision = precision

    def class_names(self, data_samples, batch_size):
        """Prompt class name of each image (from the metainfo ``category``)."""
        if data_samples is None:
            return [self.default_class_name] * batch_size
        names = []
        for sample in data_samples:
            category = sample.metainfo.get('category')
            if category is None:
                names.append(self.default_class_name)
            else:
                names.append(self.name_map.get(category, str(category).replace('_', ' ')))
        return names

    def _check_category_batch(self, data_samples):
        if not getattr(self.head, 'needs_category_batch', False) or data_samples is None:
            return
        categories = {s.metainfo.get('category') for s in data_samples}
        if len(categories) > 1:
            raise ValueError(f'{type(self.head).__name__} scores images against the rest of their category, '
                             f'but this batch mixes categories {sorted(map(str, categories))}; use '
                             f"batch_sampler=dict(type='CategoryBatchSampler') in the test dataloader.")

    def run_head(self, inputs, data_samples=None):
        """(B, 3, H, W) images -> the head's dict (``anomaly_map`` (B, H, W), ``image_scores`` (B,)),
        run under the autocast of ``precision``; half-precision tensors in it are cast to float32."""
        self._check_category_batch(data_samples)
        names = self.class_names(data_samples, inputs.shape[0])
        with self._autocast(inputs.device):
            out = self.head(self.backbone, inputs, names)
        return upcast(out)

    def extract_feat(self, inputs):
        """The backbone's DenseFeatures (the heads read the CLIP tower directly)."""
        with self._autocast(inputs.device):
            return upcast(self.backbone(inputs))

    def encode_decode(self, inputs, batch_img_metas=None):
        """(B, 3, H, W) -> (B, 1, H, W) anomaly maps."""
        return self.run_head(inputs)['anomaly_map'][:, None]

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> SegDataSamples with ``anomaly_map`` and ``pred_score``."""
        out = self.run_head(inputs, data_samples)
        return pack_anomaly_results(out['anomaly_map'], out['image_scores'], data_samples, inputs.shape[-2:],
                                    self.test_cfg.get('threshold'))

    def _forward(self, inputs, data_samples=None):
        return self.run_head(inputs, data_samples)['anomaly_map'][:, None]

    def loss(self, inputs, data_samples):
        raise RuntimeError(f'{type(self.head).__name__} is training-free: use tools/test.py.')
