"""Training-free segmentor of the SCLIP family: per-query cosine logits, stitched, then probabilities."""
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample

from ovseg.models.utils.precision import PrecisionMixin, float32_region, upcast
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.models.utils.sliding_window import slide_inference
from ovseg.registry import MODELS
from ovseg.text import load_vocabulary

CROP_PADS = ('none', 'symmetric')


def symmetric_pad(height, width, patch):
    """ClearCLIP's crop padding (left, right, top, bottom) up to a multiple of ``patch``, half before."""
    pad_w, pad_h = (-width) % patch, (-height) % patch
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


@MODELS.register_module()
class OVQuerySegmentor(PrecisionMixin, BaseSegmentor):
    """Cosine logits of every query (class synonym) averaged over windows, then class probabilities.

    The protocol of SCLIP (wangf3014/SCLIP ``clip_segmentor.py``), ClearCLIP (mc-lan/ClearCLIP
    ``clearclip_segmentor.py``) and NACLIP (sinahmr/NACLIP ``naclip.py``): unlike :class:`OVSegmentor`,
    windows are averaged as logits and the softmax is taken once, at the original image size, after the
    post-processors.

    Call graph::

        predict(inputs, data_samples)
          ├─ inference(inputs)            whole image, or slide windows (batched) averaged
          │    └─ window_logits(crops)    crop padding ─ backbone ─ cosine per query ─ bilinear to the crop
          └─ per image: unpad ─ resize to ori_shape ─ postprocessors(logits, image) (e.g. PAMR)
                        ─ query_probabilities (softmax over queries, max over a class's queries, area
                          rule, prob_thd) ─ SegDataSample(seg_logits=probabilities, pred_sem_seg)

    Args:
        backbone (dict): e.g. ``OpenCLIPBackbone`` with the method's attention strategy.
        vocabulary: anything :func:`ovseg.text.load_vocabulary` accepts (e.g. 'sclip_voc21').
        text_classifier (dict): ``OVTextClassifier`` config. Default imagenet80 templates.
        logit_scale (float): multiplier of the cosines before the softmax over queries. Default 40.
        prob_thd (float): pixels whose top class probability is below it become class 0. Default 0.
        area_thd (float, optional): SCLIP's area rule (:mod:`ovseg.models.utils.query_rules`). Default None.
        renormalize (bool): store the class probabilities divided by their sum (NACLIP). Default False.
        crop_pad (str): 'none': windows go to the backbone as they are (the patch embedding drops a
            remainder; SCLIP, NACLIP); 'symmetric': a window side that is not a multiple of the patch size
            is zero-padded, half before, and the padding cut from the upsampled logits (ClearCLIP).
            Whole-image inference never pads (as the originals). Default 'none'.
        postprocessors (Sequence[dict]): applied in order to the (1, Q, H, W) logits at the original size
            with the (1, 3, H, W) network input resized to it (bilinear) as guide, e.g. ``dict(type='PAMR')``.
        test_cfg (dict): ``mode`` 'whole' | 'slide', ``crop_size``, ``stride``, ``window_batch``.
        precision (str): 'fp32', 'bf16' or 'fp16' autocast for the backbone; the rest in float32.
        data_preprocessor (dict): ``SegDataPreProcessor`` config.
    """

    def __init__(self, backbone, vocabulary, text_classifier=dict(type='OVTextClassifier'), logit_scale=40.0,
                 prob_thd=0.0, area_thd=None, renormalize=False, crop_pad='none', postprocessors=(),
                 test_cfg=dict(mode='slide', crop_size=224, stride=112), precision='fp32',
                 data_preprocessor=None, init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if crop_pad not in CROP_PADS:
            raise ValueError(f'crop_pad must be one of {CROP_PADS}, got {crop_pad!r}')
        self.backbone = MODELS.build(backbone)
        self.text_classifier = MODELS.build(text_classifier)
        self.postprocessors = torch.nn.ModuleList([MODELS.build(p) for p in postprocessors])
        self.logit_scale, self.prob_thd = float(logit_scale), float(prob_thd)
        self.area_thd = None if area_thd is None else float(area_thd)
        self.renormalize, self.crop_pad = bool(renormalize), crop_pad
        self.test_cfg = dict(test_cfg)
        self.precision = precision
        self.align_corners = False
        self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary):
        """Use a new vocabulary (text embeddings are computed lazily and cached)."""
        self.vocabulary = load_vocabulary(vocabulary)

    @property
    def class_names(self):
        return self.vocabulary.names

    def class_embeddings(self):
        """ClassEmbeddings (one row per query) of the current vocabulary on the model's device."""
        return self.text_classifier(self.backbone, self.vocabulary)

    def extract_feat(self, inputs):
        with self._autocast(inputs.device):
            return self.backbone(inputs)

    def encode_decode(self, inputs, batch_img_metas=None):
        """(N, 3, h, w) windows -> (N, Q, h, w) float32 cosine logits of every query at window size."""
        return self.window_logits(inputs, pad=False)

    @property
    def pad_multiple(self):
        """Side multiple that ``crop_pad='symmetric'`` pads a window to (the backbone's patch size)."""
        return self.backbone.stride

    def window_logits(self, crops, pad=True):
        """Cosine logits of crops, upsampled to the crop size (padding per ``crop_pad`` when ``pad``)."""
        height, width = crops.shape[-2:]
        left, right, top, bottom = 0, 0, 0, 0
        if pad and self.crop_pad == 'symmetric':
            left, right, top, bottom = symmetric_pad(height, width, self.pad_multiple)
            if left or right or top or bottom:
                crops = F.pad(crops, (left, right, top, bottom))
        logits = self.lowres_logits(crops)
        with float32_region(crops):
            logits = F.interpolate(logits, size=crops.shape[-2:], mode='bilinear', align_corners=False)
        return logits[:, :, top:top + height, left:left + width]

    def lowres_logits(self, crops):
        """(N, 3, h, w) -> (N, Q, h / p, w / p) float32 cosines of the dense features with every query."""
        dense = self.extract_feat(crops).dense
        with float32_region(crops):
            feats = F.normalize(upcast(dense).float(), dim=1)
            emb = self.class_embeddings().embeddings.to(feats.device, torch.float32)
            # contiguous: einsum returns a channels-last view, which would make the upsampled maps
            # channels-last too and the window stitching several times slower
            return torch.einsum('bchw,qc->bqhw', feats, emb).contiguous()

    def inference(self, inputs, batch_img_metas=None):
        """Whole or slide inference -> (B, Q, H, W) float32 mean logits at input resolution."""
        mode = self.test_cfg.get('mode', 'slide')
        if mode == 'whole':
            return self.window_logits(inputs, pad=False)
        if mode != 'slide':
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {mode!r}")
        crop, stride = _pair(self.test_cfg['crop_size']), _pair(self.test_cfg['stride'])
        return slide_inference(inputs, self.window_logits, crop, stride, self.test_cfg.get('window_batch', 8))

    def refine(self, logits, image):
        """The post-processors on (1, Q, H, W) logits with the (1, 3, H, W) guide image."""
        for post in self.postprocessors:
            logits = post(logits, image)
        return logits

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> list of ``SegDataSample`` (seg_logits, pred_sem_seg)."""
        return self.postprocess(self.inference(inputs), inputs, data_samples)

    @torch.no_grad()
    def postprocess(self, logits, inputs, data_samples=None):
        """(B, Q, H, W) stitched logits -> ``SegDataSample`` per image (the originals' postprocess_result).

        Per image: unpad, resize to ``ori_shape``, post-processors (guide: the input resized alike), then
        :func:`query_probabilities`; ``seg_logits`` holds the class probabilities.
        """
        emb = self.class_embeddings()
        samples = data_samples if data_samples is not None else [None] * inputs.shape[0]
        results = []
        for i, sample in enumerate(samples):
            meta = dict(sample.metainfo) if sample is not None else {}
            logit, image = self._to_original(logits[i:i + 1], inputs[i:i + 1].float(), meta, inputs.shape[-2:])
            with float32_region(logit):
                logit = self.refine(logit, image)
                probs, pred, _ = query_probabilities(logit[0], emb.synonym_to_class, emb.num_classes,
                                                     self.logit_scale, self.area_thd, self.prob_thd,
                                                     self.renormalize)
            out = sample if sample is not None else SegDataSample(metainfo=meta)
            out.set_data({'seg_logits': PixelData(data=probs), 'pred_sem_seg': PixelData(data=pred)})
            results.append(out)
        return results

    def _to_original(self, logit, image, meta, input_shape):
        """Unpad (``img_shape``), undo a flip and resize logits and guide image to ``ori_shape``."""
        h, w = meta.get('img_shape', tuple(input_shape))[:2]
        logit, image = logit[..., :h, :w], image[..., :h, :w]
        if meta.get('flip', False):
            dims = {'horizontal': (3,), 'vertical': (2,), 'diagonal': (2, 3)}[meta.get('flip_direction', 'horizontal')]
            logit, image = logit.flip(dims), image.flip(dims)
        ori = tuple(meta.get('ori_shape', (h, w))[:2])
        if tuple(logit.shape[-2:]) != ori:
            logit = F.interpolate(logit, size=ori, mode='bilinear', align_corners=False)
            if len(self.postprocessors):
                image = F.interpolate(image, size=ori, mode='bilinear', align_corners=False)
        return logit, image

    def _forward(self, inputs, data_samples=None):
        return self.inference(inputs)

    def loss(self, inputs, data_samples):
        raise RuntimeError(f'{type(self).__name__} is training-free: it has nothing to train.')


def _pair(value):
    return (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)
