"""FC-CLIP: single-stage open-vocabulary panoptic, semantic and instance segmentation on a frozen CLIP."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.structures import InstanceData, PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.structures import SegDataSample

from ovseg.models.fcclip.classification import with_void
from ovseg.models.fcclip.ensemble import geometric_ensemble, seen_class_mask
from ovseg.models.fcclip.postprocess import (instance_inference, panoptic_inference, resize_to_output,
                                             semantic_at_output, semantic_inference)
from ovseg.models.fcclip.targets import targets_from_samples
from ovseg.models.losses.mask_point_losses import torch_rand
from ovseg.models.utils.precision import PrecisionMixin, upcast
from ovseg.registry import MODELS
from ovseg.text import load_vocabulary

DEFAULT_TEST_CFG = dict(semantic_on=True, panoptic_on=True, instance_on=True, object_mask_threshold=0.0,
                        overlap_threshold=0.8, max_per_image=100, mask_chunk=32, class_chunk=64,
                        keep_seg_logits=True)


@MODELS.register_module()
class FCCLIPSegmentor(PrecisionMixin, BaseSegmentor):
    """FC-CLIP (Yu et al., NeurIPS 2023): one frozen ConvNeXt CLIP as mask backbone and classifier.

    Call graph::

        predict(inputs, data_samples)
          └─ inference(inputs)                    pad to ``size_divisor``
               ├─ extract_feat                     frozen CLIP: res2..res5 + clip_vis_dense
               ├─ decode                           pixel_decoder ─ transformer_decoder (in-vocab logits)
               ├─ out_vocab_classifier             mask pooling of clip_vis_dense through the CLIP head
               └─ geometric_ensemble               seen (alpha) / unseen (beta) classes, void
          └─ postprocess                          upsample, crop, resize to ori_shape; semantic /
                                                  panoptic / instance -> SegDataSample
        loss(inputs, data_samples)                decode with the training vocabulary ─ MaskSetCriterion

    Outputs per image: ``seg_logits`` (K, H, W) and ``pred_sem_seg``; ``pred_panoptic_seg``
    (PixelData, (1, H, W) int32 segment ids, metainfo ``segments_info`` = list of
    ``dict(id, isthing, category_id)``); ``pred_instances`` (InstanceData: ``scores``, ``labels``,
    ``masks`` (N, H, W) bool).

    Precision (inference only; ``loss`` always runs as configured): the frozen CLIP, the pixel decoder,
    the transformer decoder and the out-of-vocabulary mask pooling / CLIP head run under autocast; the
    pixel decoder keeps its own float32 (Mask2Former's deformable attention is float32 in the original
    too). Both classifiers' final cosine similarity, the geometric ensemble and the semantic / panoptic
    / instance post-processing are float32, and so is every tensor :meth:`inference` returns.

    Args:
        backbone (dict): ``OpenCLIPBackbone`` with a ConvNeXt tower.
        pixel_decoder (dict): ``FCCLIPPixelDecoder``; ``in_channels`` defaults to the trunk's stage widths.
        transformer_decoder (dict): ``FCCLIPTransformerDecoder``; ``class_head.text_dim`` defaults to CLIP's.
        vocabulary: test vocabulary (any vocabulary spec; changeable with :meth:`set_vocabulary`).
        train_vocabulary: training vocabulary; decides seen classes and is the loss's class set.
        thing_classes (Sequence[str | int], optional): thing classes of ``vocabulary`` (names or
            indices); None = every class is a thing.
        text_classifier (dict): ``OVTextClassifier`` (FC-CLIP: 'vild14' templates).
        out_vocab_classifier (dict): ``FCCLIPOutVocabClassifier``.
        criterion (dict, optional): ``MaskSetCriterion``; ``num_classes`` defaults to the training vocabulary.
        ensemble (dict): ``alpha`` (0.4), ``beta`` (0.8), ``on_valid_mask`` (False).
        test_cfg (dict): ``semantic_on``, ``panoptic_on``, ``instance_on`` (True), ``object_mask_threshold``
            (0.0), ``overlap_threshold`` (0.8), ``max_per_image`` (100), ``mask_chunk`` (queries resized
            at a time, 32; bounds memory, results unchanged), ``class_chunk`` (classes of a semantic-only
            result at full resolution at a time, 64), ``keep_seg_logits`` (True; False keeps only
            ``pred_sem_seg``, which the metrics read: ADE-847's scores are 2.9 GB at 800 x 1067).
        size_divisor (int): inputs are zero-padded to a multiple of it. Default 32.
        precision (str): inference precision, 'fp32' (default), 'bf16' or 'fp16' (meant for CUDA); can
            be changed later through the ``precision`` attribute.
        data_preprocessor (dict): ``SegDataPreProcessor`` with CLIP mean/std (0-255), RGB.
    """

    timed_stages = (('postprocess', 'postprocess'),)  # StageTimer

    def __init__(self, backbone, pixel_decoder, transformer_decoder, vocabulary, train_vocabulary=None,
                 thing_classes=None, text_classifier=dict(type='OVTextClassifier', templates='vild14'),
                 out_vocab_classifier=dict(type='FCCLIPOutVocabClassifier'), criterion=None,
                 ensemble=dict(alpha=0.4, beta=0.8, on_valid_mask=False), test_cfg=None, size_divisor=32,
                 precision='fp32', data_preprocessor=None, init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if self.backbone.kind != 'convnext':
            raise ValueError(f'FC-CLIP needs a ConvNeXt CLIP tower; got a {self.backbone.kind} tower.')
        pixel_decoder = dict(pixel_decoder)
        pixel_decoder.setdefault('in_channels', self.backbone.stage_channels)
        self.pixel_decoder = MODELS.build(pixel_decoder)
        transformer_decoder = copy.deepcopy(dict(transformer_decoder))
        head = transformer_decoder.setdefault('class_head', dict(type='FCCLIPInVocabClassifier'))
        head.setdefault('text_dim', self.backbone.embed_dim)
        head.setdefault('hidden_dim', transformer_decoder.get('hidden_dim', 256))
        self.transformer_decoder = MODELS.build(transformer_decoder)
        self.text_classifier = MODELS.build(text_classifier)
        self.out_vocab_classifier = MODELS.build(out_vocab_classifier)
        self.void_embedding = nn.Embedding(1, self.backbone.embed_dim)
        self.train_vocabulary = load_vocabulary(train_vocabulary) if train_vocabulary is not None else None
        self.criterion = None
        if criterion is not None:
            criterion = dict(criterion)
            if 'num_classes' not in criterion and self.train_vocabulary is not None:
                criterion['num_classes'] = len(self.train_vocabulary)
            self.criterion = MODELS.build(criterion)
        self.ensemble = {**dict(alpha=0.4, beta=0.8, on_valid_mask=False), **(ensemble or {})}
        self.test_cfg = {**DEFAULT_TEST_CFG, **(test_cfg or {})}
        self.size_divisor = int(size_divisor)
        self.precision = precision
        self.align_corners = False
        self.set_vocabulary(vocabulary, thing_classes)

    # ----------------------------------------------------------------------------------- vocabulary
    def set_vocabulary(self, vocabulary, thing_classes=None):
        """Use a new test vocabulary (text embeddings are computed lazily and cached).

        Args:
            vocabulary: any vocabulary spec.
            thing_classes (Sequence[str | int], optional): names (any synonym, any case) or indices of
                thing classes; None = every class is a thing.
        """
        self.vocabulary = load_vocabulary(vocabulary)
        self.is_thing = self._thing_mask(thing_classes)
        self.seen_mask = seen_class_mask(self.vocabulary, self.train_vocabulary)

    def _thing_mask(self, thing_classes):
        k = len(self.vocabulary)
        if thing_classes is None:
            return torch.ones(k, dtype=torch.bool)
        index = {s.strip().lower(): i for i, cls in enumerate(self.vocabulary.classes) for s in cls}
        mask = torch.zeros(k, dtype=torch.bool)
        for item in thing_classes:
            i = item if isinstance(item, int) else index.get(str(item).strip().lower())
            if i is None or not 0 <= i < k:
                raise ValueError(f'thing class {item!r} is not in the vocabulary {self.vocabulary}')
            mask[i] = True
        return mask

    @property
    def class_names(self):
        return self.vocabulary.names

    def class_embeddings(self, vocabulary=None):
        """ClassEmbeddings of ``vocabulary`` (default: the test vocabulary) with the void row appended."""
        emb = self.text_classifier(self.backbone, vocabulary or self.vocabulary)
        return with_void(emb, self.void_embedding.weight)

    # -------------------------------------------------------------------------------------- forward
    def _pad(self, inputs):
        h, w = inputs.shape[-2:]
        d = self.size_divisor
        return F.pad(inputs, (0, (-w) % d, 0, (-h) % d)) if d > 1 else inputs

    def _valid_shapes(self, inputs, batch_img_metas=None):
        """(h, w) of each image inside the (possibly padded) batch: ``img_shape`` of its meta, else the
        batch's own size."""
        size = tuple(inputs.shape[-2:])
        metas = batch_img_metas or [{}] * inputs.shape[0]
        return [tuple(m.get('img_shape', size)[:2]) for m in metas]

    def extract_feat(self, inputs, valid_shapes=None):
        """(B, 3, H, W) normalised images -> frozen CLIP ``DenseFeatures`` (no gradient).

        ``valid_shapes`` (the unpadded (h, w) of each image) is for descendants whose other towers
        preprocess the images themselves (FrozenSeg's SAM); FC-CLIP does not need it.
        """
        with torch.no_grad():
            return self.backbone(inputs, token_layers=('res2', 'res3', 'res4', 'res5'))

    def decode(self, feats, class_embeddings):
        """Pixel decoder + transformer decoder -> dict (``pred_logits``, ``pred_masks``, ``aux_outputs``)
        with ``pixel_decoder`` (:class:`PixelDecoderOutput`) added."""
        stages = [feats.tokens[name] for name in ('res2', 'res3', 'res4', 'res5')]
        pix = self.pixel_decoder(stages)
        out = self.transformer_decoder(pix.multi_scale_features, pix.mask_features, class_embeddings)
        out['pixel_decoder'] = pix
        return out

    def classify_masks(self, feats, out, class_embeddings):
        """Out-of-vocabulary classification of the predicted masks with the frozen CLIP
        (:class:`OutVocabOutput`)."""
        return self.out_vocab_classifier(self.backbone, feats.tokens['clip_vis_dense'], out['pred_masks'],
                                         class_embeddings)

    def class_probabilities(self, out, out_vocab):
        """Per-query class log-probabilities with void: FC-CLIP's geometric ensemble of the in- and
        out-of-vocabulary logits (the :func:`geometric_ensemble` dict)."""
        valid = None
        if self.ensemble['on_valid_mask']:
            valid = (out_vocab.mask_for_pooling > 0).flatten(2).any(-1)
        return geometric_ensemble(out['pred_logits'], out_vocab.logits, self.seen_mask, self.ensemble['alpha'],
                                  self.ensemble['beta'], valid)

    def inference(self, inputs, batch_img_metas=None):
        """Run the model and the ensemble on (B, 3, H, W) inputs (padded here to ``size_divisor``).

        Returns:
            dict: the decoder outputs, ``features`` (DenseFeatures), ``out_vocab`` (OutVocabOutput), the
            :func:`geometric_ensemble` entries (``log_probs`` (B, Q, K + 1) feeds the postprocessing) and
            ``padded_shape``; float32 in every precision.
        """
        valid_shapes = self._valid_shapes(inputs, batch_img_metas)
        inputs = self._pad(inputs)
        class_emb = self.class_embeddings()  # float32 text embeddings (outside autocast: cached as such)
        with self._autocast(inputs.device):
            feats = self.extract_feat(inputs, valid_shapes)
            out = self.decode(feats, class_emb)
            out_vocab = self.classify_masks(feats, out, class_emb)
        out, feats, out_vocab = upcast((out, feats, out_vocab))
        out.update(self.class_probabilities(out, out_vocab), features=feats, out_vocab=out_vocab,
                   padded_shape=tuple(inputs.shape[-2:]))
        return out

    def encode_decode(self, inputs, batch_img_metas=None):
        """(B, 3, H, W) -> (B, K, H, W) semantic scores at input resolution (mmseg API)."""
        out = self.inference(inputs, batch_img_metas)
        masks = F.interpolate(out['pred_masks'], size=out['padded_shape'], mode='bilinear',
                              align_corners=False)
        sem = torch.stack([semantic_inference(c, m) for c, m in zip(out['log_probs'], masks)])
        return sem[..., :inputs.shape[-2], :inputs.shape[-1]]

    def _forward(self, inputs, data_samples=None):
        """Tensor mode: decoder outputs with the test vocabulary (float32 in every precision)."""
        valid_shapes = self._valid_shapes(inputs, [s.metainfo for s in data_samples] if data_samples else None)
        inputs = self._pad(inputs)
        class_emb = self.class_embeddings()
        with self._autocast(inputs.device):
            out = self.decode(self.extract_feat(inputs, valid_shapes), class_emb)
        return upcast(out)

    # -------------------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> list of ``SegDataSample`` with the enabled results."""
        samples = data_samples if data_samples is not None else [None] * inputs.shape[0]
        out = self.inference(inputs, [s.metainfo if s is not None else {} for s in samples])
        results = []
        for i, sample in enumerate(samples):
            meta = dict(sample.metainfo) if sample is not None else {}
            meta.setdefault('img_shape', tuple(inputs.shape[-2:]))
            meta.setdefault('ori_shape', meta['img_shape'])
            result = sample if sample is not None else SegDataSample(metainfo=meta)
            self.postprocess(out['log_probs'][i], out['pred_masks'][i], out['padded_shape'], meta, result,
                             semantic_fn=self.semantic_fn(out, i, meta))
            results.append(result)
        return results

    def semantic_fn(self, out, index, meta):
        """The semantic rule of image ``index`` (``fn(mask_cls, masks, mask_prob) -> (K, H, W)``), or None
        for :func:`semantic_inference`. A hook for descendants (FrozenSeg's proposal ensemble)."""
        return None

    def _resize_masks(self, masks, padded_shape, img_shape, ori_shape):
        """(Q, h, w) mask logits -> (Q, H0, W0): upsample to the padded input, crop, resize to ori_shape."""
        chunks = []
        for chunk in masks.split(int(self.test_cfg['mask_chunk'])):
            up = F.interpolate(chunk[None], size=padded_shape, mode='bilinear', align_corners=False)[0]
            chunks.append(resize_to_output(up, img_shape, ori_shape))
        return torch.cat(chunks)

    def postprocess(self, mask_cls, mask_pred, padded_shape, meta, result, semantic_fn=None):
        """Fill one ``SegDataSample`` from (Q, K + 1) class log-probs and (Q, h, w) mask logits.

        As in FC-CLIP, masks are resized to the output before inference when panoptic or instance
        results are requested, otherwise the semantic map is computed first (on the masks upsampled to
        the padded input) and then cropped and resized. ``semantic_fn(mask_cls, masks, mask_prob)``
        replaces :func:`semantic_inference` (see :meth:`semantic_fn`).
        """
        cfg = self.test_cfg
        semantic = semantic_fn or semantic_inference
        img_shape, ori_shape = tuple(meta['img_shape'][:2]), tuple(meta['ori_shape'][:2])
        flip = meta.get('flip', False)
        flip_dims = {'horizontal': (-1,), 'vertical': (-2,), 'diagonal': (-2, -1)}.get(
            meta.get('flip_direction', 'horizontal'), (-1,))
        if cfg['panoptic_on'] or cfg['instance_on']:
            masks = self._resize_masks(mask_pred, padded_shape, img_shape, ori_shape)
            masks = masks.flip(flip_dims) if flip else masks
            prob = masks.sigmoid()  # once, shared by the three results
            sem = semantic(mask_cls, masks, prob) if cfg['semantic_on'] else None
        else:
            masks = prob = None
            up = F.interpolate(mask_pred[None], size=padded_shape, mode='bilinear', align_corners=False)[0]
            if semantic_fn is None:  # in class chunks (a large vocabulary never lives whole at full size)
                sem, pred = semantic_at_output(mask_cls, up, img_shape, ori_shape, cfg.get('class_chunk', 64),
                                               cfg.get('keep_seg_logits', True), flip_dims if flip else None)
                self._set_semantic(result, sem, pred)
                sem = None
            else:
                sem = resize_to_output(semantic(mask_cls, up, None), img_shape, ori_shape)
                sem = sem.flip(flip_dims) if flip else sem
        if sem is not None:
            self._set_semantic(result, sem, sem.max(dim=0).indices)  # first maximum, as argmax; 2x faster
        is_thing = self.is_thing.to(mask_cls.device)
        if cfg['panoptic_on']:
            pan, segments = panoptic_inference(mask_cls, masks, is_thing, cfg['object_mask_threshold'],
                                               cfg['overlap_threshold'], mask_prob=prob)
            result.pred_panoptic_seg = PixelData(data=pan[None], metainfo=dict(segments_info=segments))
        if cfg['instance_on']:
            inst = instance_inference(mask_cls, masks, is_thing, cfg['max_per_image'], mask_prob=prob)
            result.pred_instances = InstanceData(**inst)
        return result

    def _set_semantic(self, result, sem, pred):
        """``pred_sem_seg`` always; ``seg_logits`` unless ``test_cfg.keep_seg_logits`` is False (or None)."""
        if sem is not None and self.test_cfg.get('keep_seg_logits', True):
            result.set_data({'seg_logits': PixelData(data=sem)})
        result.set_data({'pred_sem_seg': PixelData(data=pred[None])})

    # ----------------------------------------------------------------------------------------- loss
    def loss(self, inputs, data_samples, rand=None):
        """Training losses with the training vocabulary (the CLIP backbone stays frozen).

        Args:
            inputs (Tensor): (B, 3, H, W) normalised images.
            data_samples (list[SegDataSample]): targets (see :func:`targets_from_samples`).
            rand (Callable, optional): ``rand(shape, device)`` replacing ``torch.rand`` for point sampling.

        Returns:
            dict[str, Tensor]: weighted ``loss_ce``, ``loss_mask``, ``loss_dice`` and their ``_i`` variants.
        """
        if self.criterion is None or self.train_vocabulary is None:
            raise RuntimeError('FCCLIPSegmentor.loss needs train_vocabulary and criterion in the config.')
        valid_shapes = self._valid_shapes(inputs, [s.metainfo for s in data_samples])
        inputs = self._pad(inputs)
        feats = self.extract_feat(inputs, valid_shapes)
        out = self.decode(feats, self.class_embeddings(self.train_vocabulary))
        targets = targets_from_samples(data_samples, inputs.shape[-2:], inputs.device)
        return self.criterion(out, targets, rand=rand or torch_rand)
