"""Trident (Shi, Dong, Xu, ICCV 2025; ``YuHengsss/Trident``): splice-then-segment with CLIP, DINO and SAM."""
import os.path as osp

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from ovseg.models.backbones.affinity import Affinity, affinity_from_features
from ovseg.models.postprocessors.sam_refine import packing_scores
from ovseg.models.proposals.sam import SAMImage
from ovseg.models.segmentors.query_segmentor import OVQuerySegmentor
from ovseg.models.utils.input_images import images_from_inputs
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.models.utils.vfm_input import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_to_vfm_input
from ovseg.models.utils.window_splice import SubWindowSplicer
from ovseg.registry import MODELS

SAM_PATCH = 16  # segment-anything's image-encoder patch size (Trident's get_sam_feat uses 16 too)


@MODELS.register_module()
class TridentSegmentor(OVQuerySegmentor):
    """Trident: CLIP + DINO features of sub-windows spliced, aggregated by SAM, classified, refined by SAM.

    Per image (one at a time, as the original):

    1. **Splice** (:class:`~ovseg.models.utils.window_splice.SubWindowSplicer`): the CLIP input is cut into
       ``crop`` windows at ``stride``. DINO's final-norm patch features of every window give the proxy
       attention ``softmax((S - β mean(S)) γ)`` with negative logits excluded, the mean taken over the
       similarities of **all windows together**; CLIP's last block applies it to its values (class token
       dropped), without residual or feed-forward (``ExternalAffinityAttention``). The windows' outputs,
       before ``ln_post``, are averaged into one map of the image.
    2. **SAM encoder**: the original image (read again from its file, sides rounded up to a multiple of
       ``image_multiple`` with OpenCV's bilinear resize; the refiner's :meth:`sam_input`) is encoded once.
       The same pass gives the embedding the refinement prompts against and, from the last block's
       attention and values, the aggregation weights of the valid SAM grid
       (:class:`~ovseg.models.refiners.sam_correlation.SAMCorrelationAggregator`). With ``sam_splits=2``
       (Trident's Cityscapes path) the left and right halves are encoded separately for the aggregation
       and the refinement encodes the whole image.
    3. **Aggregate**: the spliced map is resized to the valid SAM grid and mixed by the weights.
    4. **Classify**: ``ln_post`` and ``proj``, cosine with the text embeddings on the SAM grid, bilinear to
       the original size, ``softmax(logit_scale * cos)`` over the queries, a class's maximum over its
       queries, argmax, ``prob_thd`` to class 0.
    5. **Refine** (``sam_refinement``), the final post-processor: :class:`~ovseg.models.postprocessors.SAMRefiner`
       on the original image with the probabilities and the prediction, reusing the embedding of step 2.

    Call graph::

        predict ─ per image: original_image ─ segment_image
            ├─ splice_features(image)        splicer.resize ─ windows ─ vfm_features ─ proxy affinity
            │                                ─ backbone (head=False) per window batch ─ splicer.splice
            ├─ sam_stage(sam_input(original)) SAM prepare ─ aggregator.correlation (per split)
            ├─ aggregate                     aggregator(spliced, weights) per SAM split
            ├─ classify                      backbone.project_dense ─ cosines ─ resize ─ probabilities
            └─ refine_prediction             sam_refiner.refine(original, probs, pred, shared embedding)

    Args:
        vfm (dict): the foundation model; default DINO ViT-B/16 (``dino_vitb16``, Trident's), final norm.
        sam_refiner (dict): ``SAMRefiner`` config (the post-processor of step 5); its SAM (segment-anything)
            serves both SAM stages.
        aggregator (dict): ``SAMCorrelationAggregator`` config.
        sam_refinement (bool): run step 5 (Trident's ``--sam_refine``). Default True.
        sam_splits (int): 1, or 2 for Trident's Cityscapes path (halves encoded separately). Default 1.
        beta (float): shift of the mean DINO similarity. Default 1.2.
        gamma (float): scale of the shifted similarities. Default 3.0.
        clip_mean, clip_std (Sequence[float]): 0..1 statistics the CLIP input is un-normalised with for DINO.
        test_cfg (dict): ``crop_size`` (336), ``stride`` (224), ``window_batch`` (windows per tower call, 8).
        **kwargs: :class:`OVQuerySegmentor` arguments (``backbone`` with ``ExternalAffinityAttention`` in the
            last block, ``vocabulary``, ``text_classifier``, ``logit_scale``, ``prob_thd``, ``precision``,
            ``data_preprocessor``).
    """

    timed_stages = (('splice_features', 'splice'), ('classify', 'classify'),  # StageTimer
                    ('refine_prediction', 'refinement'))

    def __init__(self, vfm=dict(type='VFMBackbone', model_name='dino_vitb16', feature='norm'),
                 sam_refiner=dict(type='SAMRefiner'), aggregator=dict(type='SAMCorrelationAggregator'),
                 sam_refinement=True, sam_splits=1, beta=1.2, gamma=3.0, clip_mean=OPENAI_CLIP_MEAN,
                 clip_std=OPENAI_CLIP_STD, test_cfg=dict(crop_size=336, stride=224, window_batch=8), **kwargs):
        super().__init__(test_cfg=dict(test_cfg, mode='splice'), **kwargs)
        self.vfm = MODELS.build(vfm)
        self.sam_refiner = MODELS.build(sam_refiner) if isinstance(sam_refiner, dict) else sam_refiner
        if not hasattr(self.sam_refiner.sam, 'prepare_image'):
            raise ValueError(f'Trident reads the attention of segment-anything\'s image encoder; '
                             f'{type(self.sam_refiner.sam).__name__} has none (use SAMPredictor).')
        self.aggregator = MODELS.build(aggregator)
        if int(sam_splits) not in (1, 2):
            raise ValueError(f'sam_splits must be 1 or 2 (Cityscapes), got {sam_splits}')
        self.sam_refinement, self.sam_splits = bool(sam_refinement), int(sam_splits)
        self.beta, self.gamma = float(beta), float(gamma)
        self.clip_mean, self.clip_std = tuple(clip_mean), tuple(clip_std)
        self.splicer = SubWindowSplicer(self.test_cfg.get('crop_size', 336), self.test_cfg.get('stride', 224),
                                        self.backbone.stride)

    @property
    def sam(self):
        """The segment-anything predictor both SAM stages use (the refiner's)."""
        return self.sam_refiner.sam

    def train(self, mode=True):
        super().train(mode)
        self.vfm.eval()
        return self

    # ------------------------------------------------------------------------------ 1. splice
    def vfm_features(self, crops):
        """(n, 3, c, c) CLIP-normalised windows -> the foundation model's (n, C, I, J) features."""
        x = clip_to_vfm_input(crops.float(), self.vfm.mean, self.vfm.std, self.clip_mean, self.clip_std)
        return self.vfm(x).dense

    def window_affinity(self, vfm_feats):
        """Proxy attention of all windows of one image, the similarity mean over all of them."""
        with float32_region(vfm_feats):
            return affinity_from_features(upcast(vfm_feats).float(), scale=self.gamma, shift=self.beta,
                                          min_value=0.0, mean_over='batch')

    def splice_features(self, image, trace=None):
        """(1, 3, h, w) CLIP input -> (1, D, Hc / p, Wc / p) spliced last-block tokens (before ``ln_post``)."""
        image = self.splicer.resize(image)
        crops, boxes = self.splicer.windows(image)
        batch = max(int(self.test_cfg.get('window_batch', 8)), 1)
        with self._autocast(image.device):
            vfm_feats = torch.cat([self.vfm_features(c) for c in crops.split(batch)])
            affinity = self.window_affinity(vfm_feats)
            maps = []
            for start in range(0, len(crops), batch):
                part = Affinity(weights=affinity.weights[start:start + batch], grid=affinity.grid,
                                value_grid=affinity.value_grid)
                maps.append(self.backbone(crops[start:start + batch], external={'affinity': part},
                                          head=False).dense)
        grid = (image.shape[-2] // self.splicer.patch, image.shape[-1] // self.splicer.patch)
        spliced, count = self.splicer.splice(upcast(torch.cat(maps)).float(), boxes, grid)
        if trace is not None:
            trace.update(clip_input=image, windows=crops, window_boxes=boxes, vfm_feats=vfm_feats,
                         window_affinity=affinity, window_maps=torch.cat(maps), spliced=spliced,
                         splice_count=count)
        return spliced

    # ---------------------------------------------------------------------------- 2. SAM encoder
    def sam_correlation(self, sam_rgb, observe=None):
        """(H16, W16, 3) uint8 RGB -> its SAMImage (embedding for the refinement) and aggregation weights
        (``observe``: see :meth:`SAMCorrelationAggregator.correlation`)."""
        x, input_size, original_size = self.sam.prepare_image(sam_rgb)
        valid = (input_size[0] // SAM_PATCH, input_size[1] // SAM_PATCH)
        with self._autocast(x.device):
            embedding, affinity = self.aggregator.correlation(self.sam.model.image_encoder, x, valid, observe)
        return SAMImage(embedding=upcast(embedding).float(), input_size=input_size,
                        original_size=original_size), affinity

    def sam_stage(self, sam_rgb, observe=None):
        """SAM's image (the original rounded up, :meth:`SAMRefiner.sam_input`) -> the refinement's SAMImage
        (None for split halves) and the aggregation weights of every split, left to right."""
        if self.sam_splits == 1:
            sam_image, affinity = self.sam_correlation(sam_rgb, observe)
            return sam_image, [affinity]
        half = sam_rgb.shape[1] // 2
        return None, [self.sam_correlation(np.ascontiguousarray(part), observe)[1]
                      for part in (sam_rgb[:, :half], sam_rgb[:, half:])]

    # ---------------------------------------------------------------------------- 3. aggregate
    def aggregate(self, spliced, affinities):
        """(1, D, h, w) spliced map -> (1, D, sh, sum of sw) aggregated per SAM split."""
        widths = [a.grid[1] for a in affinities]
        with float32_region(spliced):
            resized = F.interpolate(spliced, size=(affinities[0].grid[0], sum(widths)), mode='bilinear',
                                    align_corners=False)
            parts = resized.split(widths, dim=-1)
            return torch.cat([self.aggregator(p, a) for p, a in zip(parts, affinities)], dim=-1)

    # ----------------------------------------------------------------------------- 4. classify
    def classify(self, aggregated, ori_shape):
        """(1, D, sh, sw) -> per-query cosines on the SAM grid (Q, sh, sw), class probabilities (K, H, W)
        and prediction (1, H, W) at ``ori_shape``."""
        with self._autocast(aggregated.device):
            dense = self.backbone.project_dense(aggregated)
        with float32_region(aggregated):
            feats = F.normalize(upcast(dense).float(), dim=1)
            emb = self.class_embeddings()
            cos = torch.einsum('bchw,qc->bqhw', feats, emb.embeddings.to(feats.device, torch.float32))[0]
            logits = F.interpolate(cos[None], size=tuple(ori_shape), mode='bilinear', align_corners=False)[0]
            probs, pred, _ = query_probabilities(logits, emb.synonym_to_class, emb.num_classes,
                                                 self.logit_scale, self.area_thd, self.prob_thd)
        return cos, probs, pred

    # ------------------------------------------------------------------------------- 5. refine
    def refine_prediction(self, original, probs, pred, sam_image=None):
        """SAM refinement of one image -> (RefineResult, packing scores whose argmax is its prediction)."""
        result = self.sam_refiner.refine(original, probs, pred, sam_image=sam_image)
        return result, packing_scores(result, probs)

    # ---------------------------------------------------------------------------------- image
    @torch.no_grad()
    def segment_image(self, image, original, trace=None, observe=None):
        """One image: (1, 3, h, w) CLIP input and the (H, W, 3) uint8 RGB original -> scores (K, H, W)
        and prediction (1, H, W) at the original size. ``trace`` (a dict) receives every intermediate;
        ``observe`` sees SAM's last-block attention (:meth:`SAMCorrelationAggregator.correlation`)."""
        spliced = self.splice_features(image, trace)
        sam_rgb = self.sam_refiner.sam_input(original)
        sam_image, affinities = self.sam_stage(sam_rgb, observe)
        aggregated = self.aggregate(spliced, affinities)
        cos, probs, coarse = self.classify(aggregated, original.shape[:2])
        scores, pred, result = probs, coarse, None
        if self.sam_refinement:
            result, scores = self.refine_prediction(original, probs, coarse, sam_image)
            pred = result.pred.reshape(coarse.shape).to(coarse.dtype)
        if trace is not None:
            trace.update(sam_rgb=sam_rgb, sam_image=sam_image, sam_affinities=affinities, aggregated=aggregated,
                         cos_grid=cos, probs=probs, coarse_pred=coarse, refine=result)
        return scores, pred

    def original_image(self, sample, image, data_preprocessor=None):
        """(H, W, 3) uint8 RGB original: the sample's ``ori_img`` or file at ``img_path`` (read as Trident
        does, OpenCV to RGB), else the network input itself resized back to ``ori_shape``."""
        meta = sample.metainfo if sample is not None else {}
        if meta.get('ori_img') is not None or (meta.get('img_path') and osp.isfile(str(meta['img_path']))):
            return self.sam_refiner.original_image(sample)
        rgb = images_from_inputs(image, data_preprocessor)[0].permute(2, 0, 1)[None].float()
        ori = tuple(meta.get('ori_shape', rgb.shape[-2:]))[:2]
        if tuple(rgb.shape[-2:]) != ori:
            rgb = F.interpolate(rgb, size=ori, mode='bilinear', align_corners=False)
        return rgb[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> ``SegDataSample`` per image (``seg_logits``: class
        probabilities, refined where SAM kept a mask; ``pred_sem_seg``), at the original size."""
        samples = data_samples if data_samples is not None else [None] * inputs.shape[0]
        results = []
        for i, sample in enumerate(samples):
            meta = dict(sample.metainfo) if sample is not None else {}
            if meta.get('flip', False):
                raise NotImplementedError('Trident has no flip test-time augmentation.')
            h, w = meta.get('img_shape', inputs.shape[-2:])[:2]
            image = inputs[i:i + 1, :, :h, :w]
            original = self.original_image(sample, image, self.data_preprocessor)
            meta.setdefault('ori_shape', tuple(original.shape[:2]))
            scores, pred = self.segment_image(image, original)
            out = sample if sample is not None else SegDataSample(metainfo=meta)
            out.set_data({'seg_logits': PixelData(data=scores), 'pred_sem_seg': PixelData(data=pred)})
            results.append(out)
        return results

    def _forward(self, inputs, data_samples=None):
        return [s.seg_logits.data for s in self.predict(inputs, data_samples)]

    def inference(self, inputs, batch_img_metas=None):
        raise NotImplementedError('Trident segments one image at a time with its original: use predict().')
