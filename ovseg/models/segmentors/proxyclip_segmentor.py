"""ProxyCLIP (Lan et al., ECCV 2024; mc-lan/ProxyCLIP): a foundation model's affinity attends over CLIP's values."""
import torch
import torch.nn.functional as F

from ovseg.models.backbones.affinity import affinity_from_features
from ovseg.models.segmentors.query_segmentor import OVQuerySegmentor
from ovseg.models.utils.precision import float32_region, upcast
from ovseg.models.utils.vfm_input import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_to_vfm_input
from ovseg.registry import MODELS


def proxy_affinity(vfm_feats, beta=1.2, gamma=3.0):
    """ProxyCLIP's proxy attention from a foundation model's (B, C, I, J) features.

    ``S = f̂ᵀ f̂`` (features L2-normalised over channels); logits ``(S - β mean(S)) γ`` with the mean over
    all I·J x I·J entries of each image (diagonal included); logits below 0 are excluded (-inf); softmax
    over the keys (``custom_attn`` of ProxyCLIP's ``open_clip/transformer.py``). The same weights serve
    every head. A row whose every logit is negative is NaN, as in the original.

    Returns:
        Affinity: (B, I·J, I·J) weights on the (I, J) grid; CLIP's values are resized to it.
    """
    with float32_region(vfm_feats):
        return affinity_from_features(upcast(vfm_feats).float(), scale=gamma, shift=beta, min_value=0.0)


@MODELS.register_module()
class ProxyCLIPSegmentor(OVQuerySegmentor):
    """ProxyCLIP: CLIP's last block attends with a vision foundation model's affinity (proxy attention).

    Per window (zero-padded symmetrically to a multiple of 56): the foundation model's features of the
    re-normalised window give :func:`proxy_affinity`; CLIP runs its blocks as trained up to the last one,
    whose values (class token dropped, bilinearly resized to the foundation model's grid) are mixed by the
    affinity and projected, with no residual and no feed-forward (``ExternalAffinityAttention``); then
    ``ln_post`` and ``proj``. Cosine logits per query on that grid are upsampled to the window, stitched
    and post-processed as in :class:`OVQuerySegmentor` (softmax of ``logit_scale`` x logits over queries,
    max over a class's queries, ``prob_thd`` to class 0).

    Call graph::

        predict ─ inference (slide windows, batched) ─ window_logits (pad to 56) ─ lowres_logits
                                                         └─ extract_feat: vfm(clip_to_vfm_input(crops))
                                                            ─ proxy_affinity ─ backbone(crops, affinity)
                ─ postprocess (ori_shape, query_probabilities)

    Args:
        vfm (dict): the foundation model, e.g. ``dict(type='VFMBackbone', model_name='dino_vitb8')``
            (DINO ViT-B/8, the original's default), 'dinov2_vitb14_reg', 'mae_vitb16'.
        beta (float): shift of the mean similarity. Default 1.2.
        gamma (float): scale of the shifted similarities. Default 3.0.
        vfm_input_size (tuple[int, int], optional): resize the window (bilinear) before the foundation
            model: the original does so for MAE (the crop size) and SAM (1024). Default None.
        pad_multiple (int): window sides are zero-padded to a multiple of it. Default 56.
        clip_mean, clip_std (Sequence[float]): the 0..1 CLIP statistics the window is un-normalised with.
        **kwargs: :class:`OVQuerySegmentor` arguments; the backbone's last block must be
            ``ExternalAffinityAttention`` (the configs in ``configs/proxyclip``).
    """

    def __init__(self, vfm=dict(type='VFMBackbone', model_name='dino_vitb8'), beta=1.2, gamma=3.0,
                 vfm_input_size=None, pad_multiple=56, clip_mean=OPENAI_CLIP_MEAN, clip_std=OPENAI_CLIP_STD,
                 crop_pad='symmetric', **kwargs):
        super().__init__(crop_pad=crop_pad, **kwargs)
        self.vfm = MODELS.build(vfm)
        self.beta, self.gamma = float(beta), float(gamma)
        self.vfm_input_size = None if vfm_input_size is None else tuple(int(s) for s in vfm_input_size)
        self._pad_multiple = int(pad_multiple)
        self.clip_mean, self.clip_std = tuple(clip_mean), tuple(clip_std)

    @property
    def pad_multiple(self):
        return self._pad_multiple

    def vfm_features(self, crops):
        """(N, 3, h, w) CLIP-normalised windows -> the foundation model's (N, C, I, J) features."""
        x = clip_to_vfm_input(crops.float(), self.vfm.mean, self.vfm.std, self.clip_mean, self.clip_std)
        if self.vfm_input_size is not None:
            x = F.interpolate(x, size=self.vfm_input_size, mode='bilinear', align_corners=False)
        return self.vfm(x).dense

    def extract_feat(self, inputs):
        """(N, 3, h, w) windows -> CLIP DenseFeatures on the foundation model's grid."""
        with self._autocast(inputs.device):
            affinity = proxy_affinity(self.vfm_features(inputs), self.beta, self.gamma)
            return self.backbone(inputs, external={'affinity': affinity})

    def train(self, mode=True):
        super().train(mode)
        self.vfm.eval()
        return self

    @torch.no_grad()
    def affinity(self, crops):
        """The proxy attention of (N, 3, h, w) windows (for inspection and tests)."""
        return proxy_affinity(self.vfm_features(crops), self.beta, self.gamma)
