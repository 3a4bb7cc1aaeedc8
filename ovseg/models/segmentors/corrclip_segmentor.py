"""CorrCLIP (Zhang et al., ICCV 2025; zdk258/CorrCLIP ``CorrCLIPv1``): CLIP correlations restricted by mask
proposals and valued by DINO, two extra feature branches, and map correction."""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.corrclip_affinity import (mask_class_layout, merge_regions, nearest_labels,
                                                      restricted_affinity)
from ovseg.models.proposals.label_maps import map_correction
from ovseg.models.segmentors.query_segmentor import OVQuerySegmentor, symmetric_pad
from ovseg.models.utils.input_images import images_from_inputs
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.models.utils.vfm_input import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_to_vfm_input
from ovseg.registry import MODELS


@MODELS.register_module()
class CorrCLIPSegmentor(OVQuerySegmentor):
    """CorrCLIP: per window, DINO's q + k features restricted by the proposals attend over CLIP's values.

    Call graph::

        predict(inputs, data_samples)
          ├─ label_maps: proposals(image, meta) at the original size ─ nearest to the input size
          ├─ inference([inputs, label map]) slide windows (batched); per window batch window_logits:
          │    pad to 56 (image 0, labels pad_value) ─ extract_feat:
          │      vfm q + k (L2-normalised) ─ labels to its grid ─ merge_regions (DBSCAN, per window)
          │      ─ restricted_affinity ─ mask_class_layout ─ CorrCLIPBackbone (main + spatial + semantic)
          │    ─ cosine per query on the DINO grid ─ bilinear to the window
          └─ postprocess (ori_shape, softmax of logit_scale x logits, max over a class's queries, prob_thd)
             ─ map_correction with the original-size proposals

    Args:
        vfm (dict): the foundation model; default DINO ViT-B/8 with ``feature='q+k'`` (the original's).
        proposals (dict): a label-map source (:mod:`ovseg.models.proposals.label_maps`), e.g.
            ``dict(type='PrecomputedLabelMaps', root='data/region_masks/voc')`` (CorrCLIP's released
            SAM 2 masks) or ``dict(type='GeneratedLabelMaps', generator=dict(type='SAMAutomaticProposals'))``.
        tau (float): temperature multiplier of the restricted correlation. Default 4.
        dbscan_eps (float): DBSCAN radius of mask merging. Default 0.2.
        dbscan_min_samples (int): Default 1.
        merge_offset (int): merged regions get ``merge_offset + cluster``. Default 10000.
        pad_value (int): label of padded window pixels. Default 10000 (the original's; it can coincide
            with merged cluster 0, as there).
        map_correction (bool): replace the prediction inside each proposal by its mode. Default True.
        pad_multiple (int): window sides are zero-padded to a multiple of it. Default 56.
        clip_mean, clip_std (Sequence[float]): 0..1 CLIP statistics to un-normalise windows for the VFM.
        **kwargs: :class:`OVQuerySegmentor` arguments (``backbone`` a ``CorrCLIPBackbone``).
    """

    timed_stages = (('label_maps', 'proposals'),)  # StageTimer

    def __init__(self, vfm=dict(type='VFMBackbone', model_name='dino_vitb8', feature='q+k'),
                 proposals=dict(type='GeneratedLabelMaps'), tau=4.0, dbscan_eps=0.2, dbscan_min_samples=1,
                 merge_offset=10000, pad_value=10000, map_correction=True, pad_multiple=56,
                 clip_mean=OPENAI_CLIP_MEAN, clip_std=OPENAI_CLIP_STD, crop_pad='symmetric', **kwargs):
        super().__init__(crop_pad=crop_pad, **kwargs)
        self.vfm = MODELS.build(vfm)
        self.proposals = MODELS.build(proposals) if isinstance(proposals, dict) else proposals
        self.tau, self.dbscan_eps, self.dbscan_min_samples = float(tau), float(dbscan_eps), int(dbscan_min_samples)
        self.merge_offset, self.pad_value = int(merge_offset), int(pad_value)
        self.map_correction = bool(map_correction)
        self._pad_multiple = int(pad_multiple)
        self.clip_mean, self.clip_std = tuple(clip_mean), tuple(clip_std)

    @property
    def pad_multiple(self):
        return self._pad_multiple

    def train(self, mode=True):
        super().train(mode)
        self.vfm.eval()
        return self

    # --------------------------------------------------------------------------------- windows
    def window_logits(self, crops, pad=True):
        """(N, 4, h, w) windows (image channels, then the label map) -> (N, Q, h, w) cosine logits."""
        images, labels = crops[:, :3], crops[:, 3:]
        height, width = images.shape[-2:]
        left, right, top, bottom = 0, 0, 0, 0
        if pad and self.crop_pad == 'symmetric':
            left, right, top, bottom = symmetric_pad(height, width, self.pad_multiple)
            if left or right or top or bottom:
                images = F.pad(images, (left, right, top, bottom))
                labels = F.pad(labels, (left, right, top, bottom), value=float(self.pad_value))
        logits = self.lowres_logits(torch.cat([images, labels], dim=1))
        with float32_region(images):
            logits = F.interpolate(logits, size=images.shape[-2:], mode='bilinear', align_corners=False)
        return logits[:, :, top:top + height, left:left + width]

    def restriction(self, images, labels):
        """Windows (N, 3, h, w) and label maps (N, h, w) -> restricted Affinity, mask-class layout, extras."""
        feats = self.vfm(clip_to_vfm_input(images.float(), self.vfm.mean, self.vfm.std, self.clip_mean,
                                           self.clip_std)).dense
        with float32_region(images):
            feats = F.normalize(upcast(feats).float().flatten(2).transpose(1, 2), dim=-1)
            grid = tuple(self.vfm_grid(images))
            labels = nearest_labels(labels, grid)
            merged = torch.stack([merge_regions(lab, f, self.dbscan_eps, self.dbscan_min_samples,
                                                self.merge_offset)[0] for lab, f in zip(labels, feats)])
            affinity = restricted_affinity(feats, merged.flatten(1), grid, self.tau)
            token_grid = tuple(s // self.backbone.stride for s in images.shape[-2:])
            layout = mask_class_layout(merged, token_grid, grid)
        return affinity, layout, dict(feats=feats, labels=labels, merged=merged)

    def vfm_grid(self, images):
        return [s // self.vfm.stride for s in images.shape[-2:]]

    def extract_feat(self, inputs):
        """(N, 4, h, w) windows with their label maps -> CLIP DenseFeatures on the foundation model's grid."""
        images, labels = inputs[:, :3], inputs[:, 3]
        with self._autocast(images.device):
            affinity, layout, _ = self.restriction(images, labels)
            return self.backbone(images, affinity=affinity, layout=layout)

    # ---------------------------------------------------------------------------------- images
    def label_maps(self, inputs, data_samples):
        """Proposals of every image: (B, 1, H, W) float label maps at the input size and the original-size maps."""
        metas = [s.metainfo for s in data_samples] if data_samples is not None else \
            [dict(ori_shape=tuple(inputs.shape[-2:]), img_shape=tuple(inputs.shape[-2:]))] * inputs.shape[0]
        images = None
        out = inputs.new_full((inputs.shape[0], 1) + tuple(inputs.shape[-2:]), float(self.pad_value))
        originals = []
        for i, meta in enumerate(metas):
            image = None
            if getattr(self.proposals, 'needs_image', True):
                images = images_from_inputs(inputs, self.data_preprocessor) if images is None else images
                image = _original_image(images[i], meta)
            labels = self.proposals(image, meta).to(inputs.device)
            originals.append(labels)
            h, w = meta.get('img_shape', inputs.shape[-2:])[:2]
            out[i, 0, :h, :w] = nearest_labels(labels[None], (h, w))[0].float()
        return out, originals

    @torch.no_grad()
    def predict(self, inputs, data_samples=None):
        """Inputs from the data preprocessor -> list of ``SegDataSample`` (seg_logits, pred_sem_seg)."""
        maps, originals = self.label_maps(inputs, data_samples)
        logits = self.inference(torch.cat([inputs, maps], dim=1))
        results = self.postprocess(logits, inputs, data_samples)
        if self.map_correction:
            for sample, labels in zip(results, originals):
                pred = sample.pred_sem_seg.data
                if tuple(pred.shape[-2:]) != tuple(labels.shape):
                    labels = nearest_labels(labels[None], pred.shape[-2:])[0]
                sample.pred_sem_seg.data = map_correction(pred, labels)
        return results

    def _forward(self, inputs, data_samples=None):
        maps, _ = self.label_maps(inputs, data_samples)
        return self.inference(torch.cat([inputs, maps], dim=1))


def _original_image(image, meta):
    """(H, W, 3) uint8 RGB of the network input -> the original image: read from ``img_path`` when the file
    exists (generators see the original resolution, as CorrCLIP's do), else the input resized back to
    ``ori_shape``."""
    import os
    path = meta.get('img_path')
    if path and os.path.isfile(path):
        import mmcv
        return mmcv.imread(path, channel_order='rgb')  # as mmseg's LoadImageFromFile reads it
    h, w = meta.get('img_shape', image.shape[:2])[:2]
    image = torch.as_tensor(image[:h, :w]).permute(2, 0, 1)[None].float()
    ori = tuple(meta.get('ori_shape', (h, w)))[:2]
    image = F.interpolate(image, size=ori, mode='bilinear', align_corners=False)
    return image[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
