"""Open-vocabulary segmentor over dense CLIP features (MaskCLIP, CLIP-DINOiser, ...)."""
import torch
import torch.nn.functional as F
from mmseg.models.segmentors.base import BaseSegmentor

from ovseg.models.utils.class_chunks import predict_in_class_chunks
from ovseg.models.utils.precision import PRECISIONS, PrecisionMixin  # noqa: F401 (re-export)
from ovseg.models.utils.prob_rules import apply_background, key_smoothing, prompt_denoise
from ovseg.models.utils.seg_results import pack_seg_results
from ovseg.models.utils.sliding_window import slide_inference
from ovseg.registry import MODELS
from ovseg.text import load_vocabulary


@MODELS.register_module()
class OVSegmentor(PrecisionMixin, BaseSegmentor):
    """Dense CLIP features classified against a text vocabulary, with whole or slide inference.

    Call graph::

        predict(inputs, data_samples)
          └─ inference(inputs)               whole, or slide windows batched through encode_decode
               └─ encode_decode(crops)       pad to stride ─ extract_feat ─ head ─ softmax ─ rules ─ upsample
                    └─ extract_feat(crops)   backbone (DenseFeatures) ─ optional refiner
          └─ postprocessors(probs, inputs)    score-map post-processors (PAMR) at input resolution, in order
          └─ sam_refiner.refine_and_pack(...) the final post-processor (SAM refinement), which also packs;
             or pack_seg_results(...)         unpad, resize to the original shape, argmax -> SegDataSample
        or, with test_cfg.class_chunk and a larger vocabulary (no postprocessors, no sam_refiner):
          └─ predict_in_class_chunks(...)     lowres_scores per window, then the same upsample / average /
                                              unpad / resize per chunk of classes, running argmax

    Scores stored in ``seg_logits`` are class probabilities (softmax of the scaled cosine, after the
    test-time rules), averaged over slide windows as in the CLIP-DINOiser / MaskCLIP evaluation code.

    Args:
        backbone (dict): e.g. ``dict(type='OpenCLIPBackbone', model_name='ViT-B-16', pretrained=...)``.
        vocabulary: anything :func:`ovseg.text.load_vocabulary` accepts ('voc21', a list of names, ...).
        text_classifier (dict): ``OVTextClassifier`` config (templates, cache). Default imagenet80.
        head (dict): ``OVSimilarityHead`` config (logit scale 100).
        refiner (dict, optional): a dense-feature refiner (e.g. CLIP-DINOiser).
        background (dict, optional): background rule: ``thresh`` (top probability below which a location
            is background), ``objectness_thresh`` (0.5), ``names`` (synonyms that replace the background
            class's own, e.g. ``ovseg.text.BACKGROUND_STUFF``), ``class_name`` ('background').
        kspd (dict, optional): MaskCLIP+ test-time refinement: ``pd_thresh`` (0.5), ``ks_thresh`` (1.0),
            ``key_norm`` ('spatial' as in the original code). The keys are MaskCLIP's: ViT
            ``out_proj(k(ln_1 x))`` of the last block, ResNet the attention pool's ``k_proj`` at every
            position (chongzhou96/MaskCLIP ``vit.py`` / ``maskclip_head.py``).
        test_cfg (dict): ``mode`` 'whole' | 'slide', ``crop_size``, ``stride``, ``window_batch``;
            ``class_chunk`` (int, default None: off): with more classes than this, the scores reach full
            resolution this many classes at a time (:mod:`ovseg.models.utils.class_chunks`), with the same
            numbers and argmax as the whole map; ignored with ``postprocessors`` or ``sam_refiner``, which
            need every class's full map. ``keep_seg_logits`` (default True; not with ``sam_refiner``): False
            stores only ``pred_sem_seg`` (what the metrics read), not the (K, h0, w0) scores. The ADE-847 /
            PC-459 dataset bases set 64 and False (``large_vocabulary_test_cfg``).
        precision (str): 'fp32' (default), 'bf16' or 'fp16' autocast for the backbone and refiner; the
            similarity, softmax and rules always run in float32.
        sam_refiner (dict, optional): the final post-processor: SAM refinement of the probabilities
            (:class:`~ovseg.models.postprocessors.SAMRefiner`, Trident's: at the original image resolution,
            reading the image file again; see its ``resolution``), which also packs the results.
        postprocessors (Sequence[dict]): score-map post-processors (:mod:`ovseg.models.postprocessors`,
            e.g. ``PAMR``) applied in order to the (B, K, H, W) probabilities at input resolution with the
            preprocessed images as guide, before ``sam_refiner``.
        compile (bool | dict): run the backbone through ``torch.compile`` at inference (a dict gives
            its keyword arguments, e.g. ``dict(mode='max-autotune')``). The first call of every input
            shape compiles (tens of seconds); training is never compiled. Default False (see
            docs/benchmarks.md for what it gains).
        data_preprocessor (dict): ``SegDataPreProcessor`` config with CLIP mean/std, RGB.
    """

    timed_stages = (('scores_from_features', 'head_rules'), ('encode_decode', 'upsample'))  # StageTimer
    merged_children = ('head',)  # the similarity head's time is part of head_rules

    def __init__(self, backbone, vocabulary, text_classifier=dict(type='OVTextClassifier'),
                 head=dict(type='OVSimilarityHead'), refiner=None, background=None, kspd=None,
                 test_cfg=dict(mode='whole'), precision='fp32', data_preprocessor=None, init_cfg=None,
                 sam_refiner=None, compile=False, postprocessors=()):
        if isinstance(data_preprocessor, dict):  # mmseg's registry, so no default scope is needed
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.text_classifier = MODELS.build(text_classifier)
        self.head = MODELS.build(head)
        self.refiner = MODELS.build(refiner) if refiner is not None else None
        self.sam_refiner = MODELS.build(sam_refiner) if sam_refiner is not None else None
        self.postprocessors = torch.nn.ModuleList([MODELS.build(p) for p in postprocessors])
        self.background = dict(background) if background is not None else None
        self.kspd = dict(kspd) if kspd is not None else None
        self.test_cfg = _check_test_cfg(test_cfg)
        self.precision = precision  # checked by PrecisionMixin, here and on every later assignment
        # a compiled *function*, not a submodule: the state dict keeps its plain names
        self._backbone_fn = None
        if compile:
            options = dict(compile) if isinstance(compile, dict) else {}
            self._backbone_fn = torch.compile(self.backbone.forward, **options)
        self.align_corners = False
        needed = tuple(getattr(self.refiner, 'token_layers', ()))
        if self.kspd and self.kspd.get('ks_thresh', 0) > 0:
            if getattr(self.backbone, 'kind', 'vit') not in ('vit', 'resnet'):
                raise ValueError(f'MaskCLIP+ key smoothing reads the keys of the last ViT block or of the ResNet '
                                 f'attention pool; a {self.backbone.kind} tower has none (set kspd.ks_thresh=0).')
            needed += ('last_keys',)
        missing = tuple(n for n in needed if n not in self.backbone.token_layers)
        self.backbone.token_layers = tuple(self.backbone.token_layers) + missing
        self.set_vocabulary(vocabulary)

    # ----------------------------------------------------------------------------------- vocabulary
    def set_vocabulary(self, vocabulary):
        """Use a new vocabulary (text embeddings are computed lazily and cached)."""
        vocab = load_vocabulary(vocabulary)
        self.background_index = None
        if self.background is not None:
            vocab, self.background_index = self._resolve_background(vocab)
        self.vocabulary = vocab

    def _resolve_background(self, vocab):
        name = self.background.get('class_name', 'background')
        lowered = [n.lower() for n in vocab.names]
        if name.lower() not in lowered:
            if self.background.get('optional', False):
                return vocab, None
            raise ValueError(f'The background rule needs a class named {name!r} in the vocabulary; '
                             f'got {vocab.names[:8]}{"..." if len(vocab) > 8 else ""}.')
        index = lowered.index(name.lower())
        if self.background.get('names'):
            # keep the display name; the stuff names become its synonyms (max over synonyms scores it)
            synonyms = (vocab.classes[index][0],) + tuple(self.background['names'])
            vocab = vocab.with_class_synonyms(index, synonyms)
        return vocab, index

    @property
    def class_names(self):
        return self.vocabulary.names

    def class_embeddings(self):
        """ClassEmbeddings of the current vocabulary on the model's device."""
        return self.text_classifier(self.backbone, self.vocabulary)

    # ------------------------------------------------------------------------------------- forward
    def extract_feat(self, inputs):
        """(B, 3, H, W) -> DenseFeatures (refined when a refiner is configured); H, W multiples of stride."""
        with self._autocast(inputs.device):
            if self._backbone_fn is not None and not torch.is_grad_enabled():
                feats = self._backbone_fn(inputs)
            else:
                feats = self.backbone(inputs)
            if self.refiner is not None:
                feats = self.refiner(feats)
        return feats

    def classify_pooled(self, pooled, objectness=None):
        """Class probabilities of pooled features (mask proposals, SAM prompts) with this segmentor's text
        classifier, head and background rule.

        Args:
            pooled (Tensor): (N, C) features in the joint image-text space.
            objectness (Tensor, optional): (N,) pooled objectness for the background rule.

        Returns:
            Tensor: (N, K) probabilities.
        """
        logits = self.head(pooled.transpose(0, 1)[None, :, :, None], self.class_embeddings())
        probs = logits.softmax(dim=1)
        if self.background_index is not None:
            obj = None if objectness is None else objectness[None, None, :, None]
            probs = apply_background(probs, self.background_index, self.background.get('thresh'), obj,
                                     self.background.get('objectness_thresh', 0.5))
        return probs[0, :, :, 0].transpose(0, 1)

    def scores_from_features(self, feats):
        """DenseFeatures -> (B, K, h, w) float32 probabilities after kspd and the background rule."""
        logits = self.head(feats.dense, self.class_embeddings())
        if self.kspd and self.kspd.get('pd_thresh', 0) > 0:
            logits = prompt_denoise(logits, self.kspd['pd_thresh'])
        probs = logits.softmax(dim=1)
        if self.kspd and self.kspd.get('ks_thresh', 0) > 0:
            probs = key_smoothing(probs, feats.tokens['last_keys'], self.kspd['ks_thresh'],
                                  self.kspd.get('key_norm', 'spatial'))
        if self.background_index is not None:
            probs = apply_background(probs, self.background_index, self.background.get('thresh'),
                                     feats.objectness, self.background.get('objectness_thresh', 0.5))
        return probs

    def lowres_scores(self, inputs):
        """(B, 3, H, W) -> ((B, K, h, w) probabilities at feature resolution, (H', W') the input padded to
        the stride, the size ``encode_decode`` upsamples them to)."""
        height, width = inputs.shape[-2:]
        stride = self.backbone.stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        if pad_h or pad_w:
            inputs = F.pad(inputs, (0, pad_w, 0, pad_h))
        return self.scores_from_features(self.extract_feat(inputs)), tuple(inputs.shape[-2:])

    def encode_decode(self, inputs, batch_img_metas=None):
        """(B, 3, H, W) -> (B, K, H, W) probabilities at input resolution (padded to the stride inside)."""
        height, width = inputs.shape[-2:]
        probs, padded = self.lowres_scores(inputs)
        probs = F.interpolate(probs, size=padded, mode='bilinear', align_corners=False)
        return probs[:, :, :height, :width]

    def inference(self, inputs, batch_img_metas=None):
        """Whole or slide inference (``test_cfg.mode``) -> (B, K, H, W) probabilities."""
        slide = self._slide_windows()
        if slide is None:
            return self.encode_decode(inputs)
        return slide_inference(inputs, self.encode_decode, *slide)

    def _slide_windows(self):
        """(crop_size, stride, window_batch) of slide inference, None for whole inference."""
        mode = self.test_cfg.get('mode', 'whole')
        if mode == 'whole':
            return None
        if mode != 'slide':
            raise ValueError(f"test_cfg.mode must be 'whole' or 'slide', got {mode!r}")
        return (_pair(self.test_cfg['crop_size']), _pair(self.test_cfg['stride']),
                self.test_cfg.get('window_batch', 8))

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> list of ``SegDataSample`` (seg_logits, pred_sem_seg)."""
        keep = bool(self.test_cfg.get('keep_seg_logits', True))
        chunk = self.test_cfg.get('class_chunk')
        if chunk and not len(self.postprocessors) and self.sam_refiner is None and len(self.class_names) > chunk:
            return predict_in_class_chunks(inputs, data_samples, self.lowres_scores, self._slide_windows(),
                                           chunk, keep)
        probs = self.inference(inputs)
        for post in self.postprocessors:
            probs = post(probs, inputs)
        if self.sam_refiner is not None:
            return self.sam_refiner.refine_and_pack(probs, inputs, data_samples, self.data_preprocessor)
        return pack_seg_results(probs, data_samples, inputs.shape[-2:], keep)

    def _forward(self, inputs, data_samples=None):
        return self.inference(inputs)

    def loss(self, inputs, data_samples):
        """Trains the refiner when it defines ``loss``; the CLIP backbone is frozen."""
        if self.refiner is None or not hasattr(self.refiner, 'loss'):
            raise RuntimeError('This OVSegmentor has nothing to train: MaskCLIP is training-free. '
                               'Configure a trainable refiner (e.g. CLIP-DINOiser) to use tools/train.py.')
        with self._autocast(inputs.device):
            feats = self.backbone(inputs)
        return self.refiner.loss(feats, inputs, data_samples)


def _check_test_cfg(test_cfg):
    cfg = dict(test_cfg)
    chunk = cfg.get('class_chunk')
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f'test_cfg.class_chunk must be a positive int (classes at full resolution at a '
                         f'time) or None (off), got {chunk!r}')
    return cfg


def _pair(value):
    return (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)
