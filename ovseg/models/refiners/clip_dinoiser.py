"""CLIP-DINOiser: correlation pooling of MaskCLIP features and a background (objectness) head."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.refiners import dinoiser_teachers  # noqa: F401  registers the teachers `loss` builds
from ovseg.models.utils.dense_features import DenseFeatures
from ovseg.models.utils.precision import float32_region
from ovseg.registry import MODELS


def correlation_pool(dense, corr, eps=1e-6):
    """Weighted average of features by correlations.

    Args:
        dense (Tensor): (B, C, h, w) features to pool.
        corr (Tensor): (B, hw, hw) non-negative weights, ``corr[b, q, p]`` = weight of location p for q.
        eps (float): added to the weight sum (1e-6 as in the original).

    Returns:
        Tensor: (B, C, h, w) with ``out[:, :, q] = Σ_p corr[q, p] f[:, p] / (Σ_p corr[q, p] + eps)``.
    """
    b, c, h, w = dense.shape
    flat = dense.flatten(2)
    pooled = torch.bmm(flat, corr.transpose(1, 2)) / (corr.sum(dim=-1)[:, None, :] + eps)
    return pooled.view(b, c, h, w)


@MODELS.register_module()
class CLIPDINOiserRefiner(nn.Module):
    """Refine MaskCLIP features with CLIP-DINOiser's two light convolutions.

    ``obj_proj`` (3x3 conv, replicate padding) maps the intermediate ViT tokens to a space whose cosine
    correlations (zeroed below ``gamma``) pool the MaskCLIP features; ``bkg_decoder`` (1x1 conv on the
    L2-normalised tokens) predicts objectness, which the segmentor's background rule reads.

    Training (:meth:`loss`, called by ``OVSegmentor.loss`` with the frozen backbone's features) needs the
    teachers: a DINO correlation teacher for ``obj_proj`` and a FOUND saliency teacher for ``bkg_decoder``.
    They are held outside the module tree (no ``state_dict`` keys, no optimizer parameters, invisible to
    DDP), so a trained checkpoint holds only the two convolutions and loads into inference configs, which
    configure no teacher; they follow the inputs' device in :meth:`loss`.

    Args:
        in_channels (int): width of the hooked tokens (768 for ViT-B/16).
        proj_channels (int): width of ``obj_proj`` (256).
        token_layer (str): backbone token layer to read (``resblocks[-3].ln_2`` output by default).
        gamma (float): correlation threshold γ (0.2).
        with_background (bool): predict objectness with ``bkg_decoder``. Default True.
        teacher (dict, optional): correlation teacher config for training, e.g.
            ``dict(type='DINOCorrelationTeacher', checkpoint='dino_vitbase16_pretrain.pth')``.
        saliency_teacher (dict, optional): saliency teacher config for training the background head, e.g.
            ``dict(type='FOUNDSaliencyTeacher', checkpoint=..., decoder_checkpoint=...)``. Without it
            ``bkg_decoder`` is not trained.
    """

    def __init__(self, in_channels=768, proj_channels=256, token_layer='resblocks.-3.ln_2', gamma=0.2,
                 with_background=True, teacher=None, saliency_teacher=None):
        super().__init__()
        self.obj_proj = nn.Conv2d(in_channels, proj_channels, 3, padding=1, padding_mode='replicate')
        self.bkg_decoder = nn.Conv2d(in_channels, 1, 1) if with_background else None
        self.token_layer = token_layer
        self.gamma = float(gamma)
        # A tuple, not submodules: teachers must stay out of checkpoints, optimizers and DDP.
        self._teachers = tuple(MODELS.build(cfg) if cfg is not None else None
                               for cfg in (teacher, saliency_teacher))

    @property
    def teacher(self):
        """The correlation teacher (None for inference-only configs)."""
        return self._teachers[0]

    @property
    def saliency_teacher(self):
        """The saliency teacher (None when the background head is not trained)."""
        return self._teachers[1]

    @property
    def token_layers(self):
        """Backbone token layers this refiner reads."""
        return (self.token_layer,)

    def correlations(self, tokens):
        """(B, D, h, w) tokens -> (B, hw, hw) cosine correlations of the projected tokens."""
        proj = F.normalize(self.obj_proj(tokens), dim=1).flatten(2)
        return torch.bmm(proj.transpose(1, 2), proj)

    def objectness_logits(self, tokens):
        """(B, D, h, w) tokens -> (B, 1, h, w) background-head logits (sigmoid = objectness)."""
        return self.bkg_decoder(F.normalize(tokens, dim=1))

    def _tokens(self, feats):
        if self.token_layer not in feats.tokens:
            raise KeyError(f'CLIP-DINOiser needs backbone tokens {self.token_layer!r}; the backbone gave '
                           f'{sorted(feats.tokens)}. Add it to the backbone token_layers.')
        return feats.tokens[self.token_layer]

    def forward(self, feats):
        """DenseFeatures -> DenseFeatures with pooled ``dense`` and ``objectness`` set."""
        tokens = self._tokens(feats)
        # float32 whatever the segmentor's precision: the correlation threshold (gamma) and the
        # background rule's objectness threshold are hard decisions; both heads are cheap
        with float32_region(tokens.device):
            corr = self.correlations(tokens.float())
            corr = corr.masked_fill(corr < self.gamma, 0.0)
            pooled = correlation_pool(feats.dense.float(), corr)
            objectness = None
            if self.bkg_decoder is not None:
                objectness = self.objectness_logits(tokens.float()).sigmoid()
        return DenseFeatures(dense=pooled, tokens=feats.tokens, global_feat=feats.global_feat,
                             cls_tokens=feats.cls_tokens, objectness=objectness)

    def loss(self, feats, inputs, data_samples=None):
        """Distillation losses of CLIP-DINOiser (the original training recipe).

        ``loss_corr``: BCE-with-logits between the predicted cosine correlations, negatives clamped to 0 (the
        original uses the clamped cosine itself as the logit, no scale), and the DINO target
        ``corr_dino >= 0.2``, averaged over all (B, hw, hw) pairs. ``loss_bkg``: BCE-with-logits between
        ``bkg_decoder``'s logits and FOUND's binarised saliency on the CLIP grid. Both weigh 1.

        Args:
            feats (DenseFeatures): the frozen backbone's features; ``tokens[token_layer]`` is (B, D, h, w).
            inputs (Tensor): (B, 3, H, W) CLIP-normalised images the features came from (the teachers'
                input).
            data_samples: unused (no labels).

        Returns:
            dict[str, Tensor]: ``loss_corr`` and, with a saliency teacher and background head, ``loss_bkg``.
        """
        if self.teacher is None:
            raise RuntimeError("CLIPDINOiserRefiner.loss needs teacher=dict(type='DINOCorrelationTeacher', "
                               "checkpoint=...) (and saliency_teacher for the background head).")
        tokens = self._tokens(feats).float()
        grid = tuple(tokens.shape[-2:])
        target = self.teacher.to(inputs.device)(inputs, grid)
        pred = self.correlations(tokens).clamp(min=0.0)
        losses = dict(loss_corr=F.binary_cross_entropy_with_logits(pred, target))
        if self.bkg_decoder is not None and self.saliency_teacher is not None:
            saliency = self.saliency_teacher.to(inputs.device)(inputs, grid)
            losses['loss_bkg'] = F.binary_cross_entropy_with_logits(self.objectness_logits(tokens), saliency)
        return losses
