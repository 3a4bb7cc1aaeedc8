"""Open-vocabulary semantic segmentation with SAM 3 text prompts (SegEarth-OV3's training-free rule).

The rule (Li et al. 2025, *SegEarth-OV3*, arXiv:2512.08730; code ``earth-insights/SegEarth-OV-3``,
``segearthov3_segmentor.py`` ``_inference_single_view`` with the outputs its ``sam3_image_processor.py``
``_forward_grounding`` adds to the official ``Sam3Processor``): for every text prompt,

* instance scores ``s_q = sigmoid(logit_q) * sigmoid(presence)`` of the Q object queries; the queries with
  ``s_q > confidence_threshold`` are kept;
* instance map ``I = max_q s_q * sigmoid(up(mask_q))`` over the kept queries (0 without any), where
  ``up`` is bilinear upsampling of the mask logits to the image size (align_corners=False), then sigmoid;
* semantic map ``S = sigmoid(up(semantic_seg))``;
* prompt map ``max(I, S) * sigmoid(presence)``.

A class scores the maximum over its prompts (its synonyms); the prediction is the argmax, and with a
``background`` threshold pixels whose top score is below it become the background class (SegEarth-OV3's
``prob_thd`` / ``bg_idx``). The kept queries are also returned as instances (``pred_instances``: the
binary mask ``up(mask_q) > 0``, the prompt's class, ``s_q`` and the box), as SAM 3's processor returns
them. The rule gives no panoptic output.
"""
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from mmseg.models.segmentors.base import BaseSegmentor

from ovseg.models.utils.input_images import images_from_inputs
from ovseg.models.utils.precision import PrecisionMixin, float32_region, upcast
from ovseg.models.utils.prob_rules import apply_background
from ovseg.models.utils.seg_results import pack_seg_results
from ovseg.registry import MODELS
from ovseg.text import load_vocabulary

SYNONYM_RULES = ('all', 'first')


def fuse_prompt_maps(outputs, size, confidence_threshold=0.5, use_instances=True, use_semantic=True,
                     use_presence=True):
    """SegEarth-OV3's score map of each of P prompts (module docstring), in float32.

    Args:
        outputs: ``Sam3Model`` outputs of batch P (``pred_masks`` (P, Q, h, w), ``pred_logits`` (P, Q),
            ``presence_logits`` (P, 1), ``semantic_seg`` (P, 1, h, w), ``pred_boxes`` (P, Q, 4)).
        size (tuple[int, int]): (H, W) of the image.
        confidence_threshold (float): instance score a query must exceed. Default 0.5.
        use_instances, use_semantic, use_presence (bool): the three terms (SegEarth-OV3's ablation
            switches ``use_transformer_decoder``, ``use_sem_seg``, ``use_presence_score``). Default True.

    Returns:
        tuple[Tensor, dict]: (P, H, W) maps, and the kept queries: ``prompt`` (N,), ``scores`` (N,),
        ``boxes`` (N, 4) xyxy in [0, 1], ``mask_logits`` (N, H, W) upsampled logits.
    """
    presence = outputs.presence_logits.float().sigmoid()  # (P, 1)
    scores = outputs.pred_logits.float().sigmoid() * presence
    num = scores.shape[0]
    maps = scores.new_zeros((num,) + tuple(size))
    prompt, query = (scores > confidence_threshold).nonzero(as_tuple=True)
    logits = F.interpolate(outputs.pred_masks[prompt, query][:, None].float(), size=size, mode='bilinear',
                           align_corners=False)[:, 0]
    kept = dict(prompt=prompt, scores=scores[prompt, query], boxes=outputs.pred_boxes[prompt, query].float(),
                mask_logits=logits)
    if use_instances:
        for row, weighted in zip(prompt.tolist(), logits.sigmoid() * kept['scores'][:, None, None]):
            maps[row] = torch.maximum(maps[row], weighted)
    if use_semantic:
        semantic = F.interpolate(outputs.semantic_seg.float(), size=size, mode='bilinear',
                                 align_corners=False)
        maps = torch.maximum(maps, semantic[:, 0].sigmoid())
    if use_presence:
        maps = maps * presence[:, :, None]
    return maps, kept


@MODELS.register_module()
class SAM3Segmentor(PrecisionMixin, BaseSegmentor):
    """Every class's prompts as SAM 3 text prompts; the image encoded once, the prompts batched.

    Call graph::

        predict(inputs, data_samples)
          └─ images_from_inputs               RGB uint8 images (the preprocessor's normalisation undone)
          └─ segment_image(rgb) per image
               └─ SAM3TextPrompter.embed_image           vision encoder, once per image
               └─ text()                                 prompts encoded once per vocabulary (cached)
               └─ per batch of ``prompt_batch`` prompts:
                    SAM3TextPrompter.predict ─ fuse_prompt_maps ─ max over each class's prompts
               └─ background rule (threshold)
          └─ pack_seg_results ─ pred_instances

    Args:
        sam3 (dict | nn.Module): ``SAM3TextPrompter`` config or module (weights: Hugging Face id or folder).
        vocabulary: anything :func:`ovseg.text.load_vocabulary` accepts.
        confidence_threshold (float): instance score threshold (SegEarth-OV3's and SAM 3's default 0.5).
        use_instances, use_semantic, use_presence (bool): the three terms of the rule. Default True.
        synonyms (str): prompts of a class: 'all' its synonyms (default; max over them) or 'first' (its
            display name only).
        background (dict, optional): ``thresh`` (pixels whose top class score is below it become the
            class ``class_name``, default 'background'), ``names`` (extra prompts of that class, after its
            display name), ``optional`` (True: vocabularies without that class get no rule).
        prompt_batch (int): prompts per forward through the prompt-conditioned part. Default 4 (about
            0.6 GB of activations per prompt at 1008 x 1008 in float32; raise it on a GPU).
        return_instances (bool): attach ``pred_instances`` (masks, labels, scores, bboxes). Default True.
        test_cfg (dict): ``mode='whole'`` (SAM 3 resizes every image to its 1008 x 1008 input).
        precision (str): 'fp32' (default), 'bf16' or 'fp16' autocast for SAM 3; the rule runs in float32.
        data_preprocessor (dict): ``SegDataPreProcessor`` (RGB; no normalisation needed).
    """

    def __init__(self, sam3=dict(type='SAM3TextPrompter'), vocabulary='voc20', confidence_threshold=0.5,
                 use_instances=True, use_semantic=True, use_presence=True, synonyms='all', background=None,
                 prompt_batch=4, return_instances=True, test_cfg=dict(mode='whole'), precision='fp32',
                 data_preprocessor=None, init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.sam3 = MODELS.build(sam3) if isinstance(sam3, dict) else sam3
        if synonyms not in SYNONYM_RULES:
            raise ValueError(f'synonyms must be one of {SYNONYM_RULES}, got {synonyms!r}')
        if dict(test_cfg).get('mode', 'whole') != 'whole':
            raise ValueError("SAM3Segmentor runs on whole images (SAM 3 resizes them to its input): "
                             "test_cfg.mode must be 'whole'.")
        if prompt_batch < 1:
            raise ValueError(f'prompt_batch must be positive, got {prompt_batch}')
        self.confidence_threshold = float(confidence_threshold)
        self.use_instances, self.use_semantic = bool(use_instances), bool(use_semantic)
        self.use_presence = bool(use_presence)
        self.synonyms, self.prompt_batch = synonyms, int(prompt_batch)
        self.background = dict(background) if background is not None else None
        self.return_instances = bool(return_instances)
        self.test_cfg = dict(test_cfg)
        self.precision = precision
        self._text = None
        self.set_vocabulary(vocabulary)

    # ----------------------------------------------------------------------------------- vocabulary
    def set_vocabulary(self, vocabulary):
        """Use a new vocabulary; its prompts are encoded on first use."""
        vocab = load_vocabulary(vocabulary)
        self.background_index = None
        if self.background is not None:
            name = self.background.get('class_name', 'background')
            lowered = [n.lower() for n in vocab.names]
            if name.lower() not in lowered and self.background.get('optional', False):
                pass  # no such class in this vocabulary: no rule (background_index stays None)
            elif name.lower() not in lowered:
                raise ValueError(f'The background rule needs a class named {name!r} in the vocabulary; '
                                 f'got {vocab.names[:8]}{"..." if len(vocab) > 8 else ""}.')
            else:
                self.background_index = lowered.index(name.lower())
            if self.background_index is not None and self.background.get('names'):
                synonyms = (vocab.classes[self.background_index][0],) + tuple(self.background['names'])
                vocab = vocab.with_class_synonyms(self.background_index, synonyms)
        self.vocabulary = vocab
        prompts, classes = [], []
        for k, synonyms in enumerate(vocab.classes):
            chosen = synonyms if self.synonyms == 'all' else synonyms[:1]
            prompts += list(chosen)
            classes += [k] * len(chosen)
        self.prompts, self.prompt_classes = tuple(prompts), torch.tensor(classes)
        self._text = None

    @property
    def class_names(self):
        return self.vocabulary.names

    def text(self):
        """SAM3Text of the vocabulary's prompts, encoded once per vocabulary, device and precision."""
        device = self.sam3.device
        key = (self.prompts, id(self.sam3), str(device), self.precision)
        if self._text is None or self._text[0] != key:
            with self._autocast(device):
                self._text = (key, self.sam3.encode_text(self.prompts))
        return self._text[1]

    # ------------------------------------------------------------------------------------- forward
    @torch.no_grad()
    def segment_image(self, image):
        """(H, W, 3) uint8 RGB -> (K, H, W) float32 class scores and the kept instances (dict)."""
        device = self.sam3.device
        height, width = image.shape[:2]
        text = self.text()
        with self._autocast(device):
            encoded = self.sam3.embed_image(image)
        scores = torch.zeros((len(self.vocabulary), height, width), device=device)
        classes = self.prompt_classes.to(device)
        parts = []
        for start in range(0, len(text), self.prompt_batch):
            rows = slice(start, start + self.prompt_batch)
            with self._autocast(device):
                outputs = self.sam3.predict(encoded, text.rows(rows))
            with float32_region(device):
                maps, kept = fuse_prompt_maps(upcast(outputs), (height, width), self.confidence_threshold,
                                              self.use_instances, self.use_semantic, self.use_presence)
                for cls, prompt_map in zip(classes[rows].tolist(), maps):  # max over a class's prompts
                    scores[cls] = torch.maximum(scores[cls], prompt_map)
            kept['labels'] = classes[rows][kept.pop('prompt')]
            parts.append(kept)
        if self.background_index is not None and self.background.get('thresh') is not None:
            scores = apply_background(scores[None], self.background_index, self.background['thresh'])[0]
        instances = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
        return scores, instances

    def encode_decode(self, inputs, batch_img_metas):
        """(B, 3, H, W) preprocessed images -> (B, K, H, W) class scores."""
        images = images_from_inputs(inputs, self.data_preprocessor)
        return torch.stack([self.segment_image(image)[0] for image in images])

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> SegDataSamples (seg_logits, pred_sem_seg, pred_instances)."""
        images = images_from_inputs(inputs, self.data_preprocessor)
        scores, all_instances = None, []
        for i in range(inputs.shape[0]):
            meta = data_samples[i].metainfo if data_samples is not None else {}
            h, w = meta.get('img_shape', inputs.shape[-2:])[:2]
            image_scores, instances = self.segment_image(images[i, :h, :w])
            if scores is None:
                scores = image_scores.new_zeros((inputs.shape[0], image_scores.shape[0]) + inputs.shape[-2:])
            scores[i, :, :h, :w] = image_scores
            all_instances.append(instances)
        results = pack_seg_results(scores, data_samples, inputs.shape[-2:])
        if self.return_instances:
            for result, instances in zip(results, all_instances):
                result.pred_instances = self._instance_data(instances, result.metainfo)
        return results

    @staticmethod
    def _instance_data(instances, meta):
        """Kept queries -> InstanceData at ``ori_shape``: masks (N, H, W) bool, labels, scores, bboxes."""
        masks = instances['mask_logits'] > 0
        h, w = masks.shape[-2:]
        ori = tuple(meta.get('ori_shape', (h, w))[:2])
        if ori != (h, w):
            masks = F.interpolate(masks[:, None].float(), size=ori, mode='nearest')[:, 0] > 0.5
        scale = instances['boxes'].new_tensor([ori[1], ori[0], ori[1], ori[0]])
        return InstanceData(masks=masks, labels=instances['labels'], scores=instances['scores'],
                            bboxes=instances['boxes'] * scale)

    def _forward(self, inputs, data_samples=None):
        return torch.stack([s.seg_logits.data for s in self.predict(inputs, data_samples)])

    def extract_feat(self, inputs):
        raise NotImplementedError('SAM3Segmentor has no feature map of its own: use predict().')

    def loss(self, inputs, data_samples):
        raise NotImplementedError('SAM3Segmentor is training-free (SAM 3 is used frozen).')
