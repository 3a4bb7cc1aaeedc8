"""MAFT+: FC-CLIP's model with content-dependent text embeddings for the out-of-vocabulary classifier."""
import copy

import torch

from ovseg.models.fcclip.segmentor import FCCLIPSegmentor
from ovseg.models.fcclip.targets import targets_from_samples
from ovseg.models.losses.mask_point_losses import torch_rand
from ovseg.models.text_encoders import ClassEmbeddings
from ovseg.registry import MODELS

DENSE_EMBEDDINGS = ('released', 'per_pixel')


@MODELS.register_module()
class MAFTPlusSegmentor(FCCLIPSegmentor):
    """MAFT+ (Jiao et al., ECCV 2024) on FC-CLIP's parts.

    Call graph (on top of :class:`FCCLIPSegmentor`)::

        classify_masks(feats, out, class_embeddings)
          ├─ dense_embedding(clip_vis_dense)      the CLIP head on the dense map (B, E, h, w)
          ├─ cdt(image, text rows incl. void)      ContentDependentTransfer -> per-image text rows
          └─ out_vocab_classifier                 FC-CLIP's mask pooling through the CLIP head, scored
                                                  against the transferred rows (CLIP logit scale)
        class_probabilities                       no ensemble: out-of-vocabulary probabilities x (1 - void)
                                                  (FC-CLIP's ensemble with alpha = beta = 1)
        loss                                      FC-CLIP's criterion on detached CLIP features, plus the
                                                  mask-aware ranking loss on the transferred classification
                                                  and representation compensation against ``teacher``;
                                                  the trunk trains when the backbone says so (``trainable``)

    ``dense_embedding``: the released code flattens the (B, C, h, w) map to (B·h·w, C) rows without moving
    the channels last, so each "pixel" row it projects mixes channels and positions ('released', what the
    released weights were trained with); 'per_pixel' projects each pixel's own channel vector.

    Args:
        cdt (dict): ``ContentDependentTransfer`` (``embed_dim`` defaults to CLIP's; 'semantic' residual for
            the semantic configs, 'panoptic' for the panoptic one).
        dense_embedding (str): 'released' (default) or 'per_pixel'.
        teacher (dict, optional): the frozen CLIP ``OpenCLIPBackbone`` of representation compensation
            (training only; the released one is the pretrained CLIP, in train mode). None: no rc loss.
        mask_aware_loss (dict, optional): ``MAFTMaskAwareLoss``. None: not used.
        rc_loss (dict): ``MAFTRepresentationCompensationLoss`` (weight 0.1, MAFT+'s ``rc_weights``).
        **kwargs: :class:`FCCLIPSegmentor` arguments (``ensemble`` defaults to alpha = beta = 1).
    """

    def __init__(self, backbone, pixel_decoder, transformer_decoder, vocabulary,
                 cdt=dict(type='ContentDependentTransfer'), dense_embedding='released', teacher=None,
                 mask_aware_loss=dict(type='MAFTMaskAwareLoss'),
                 rc_loss=dict(type='MAFTRepresentationCompensationLoss', loss_weight=0.1),
                 ensemble=dict(alpha=1.0, beta=1.0, on_valid_mask=False), **kwargs):
        if dense_embedding not in DENSE_EMBEDDINGS:
            raise ValueError(f'dense_embedding must be one of {DENSE_EMBEDDINGS}, got {dense_embedding!r}')
        super().__init__(backbone, pixel_decoder, transformer_decoder, vocabulary, ensemble=ensemble, **kwargs)
        cdt = copy.deepcopy(dict(cdt))
        cdt.setdefault('embed_dim', self.backbone.embed_dim)
        self.cdt = MODELS.build(cdt)
        self.dense_embedding_mode = dense_embedding
        self.teacher = MODELS.build(teacher) if teacher is not None else None
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
        self.mask_aware_loss = MODELS.build(mask_aware_loss) if mask_aware_loss is not None else None
        self.rc_loss = MODELS.build(rc_loss) if teacher is not None else None

    def dense_embedding(self, clip_dense):
        """(B, C, h, w) stage-4 map -> (B, E, h, w) through the CLIP head (see ``dense_embedding``)."""
        b, c, h, w = clip_dense.shape
        rows = clip_dense.reshape(b * h * w, c) if self.dense_embedding_mode == 'released' else \
            clip_dense.permute(0, 2, 3, 1).reshape(b * h * w, c)
        return self.backbone.project_pooled(rows).reshape(b, h, w, -1).permute(0, 3, 1, 2)

    def transfer(self, clip_dense, class_embeddings):
        """Content-dependent class embeddings (per image) and the CDT intermediates."""
        image = self.dense_embedding(clip_dense)
        cdt = self.cdt(image, class_embeddings.embeddings)
        emb = ClassEmbeddings(cdt.text, class_embeddings.synonym_to_class, class_embeddings.num_classes,
                              class_embeddings.names)
        return emb, image, cdt

    def classify_masks(self, feats, out, class_embeddings):
        """FC-CLIP's out-of-vocabulary classifier against the transferred text rows; the CDT's inputs and
        outputs go to ``out['cdt_image']`` and ``out['cdt']``."""
        clip_dense = feats.tokens['clip_vis_dense']
        emb, image, cdt = self.transfer(clip_dense, class_embeddings)
        out.update(cdt_image=image, cdt=cdt)
        return self.out_vocab_classifier(self.backbone, clip_dense, out['pred_masks'], emb)

    def loss(self, inputs, data_samples, rand=None):
        """FC-CLIP's mask losses (on detached CLIP features), ``ranking_loss`` and ``rc_loss`` (MAFT+).

        The trained part of the CLIP (``backbone.trainable``) gets gradients only through the transferred
        out-of-vocabulary classification and representation compensation, as in the original (which
        runs the trunk twice, once detached; one forward here gives the same values and gradients).
        """
        if self.criterion is None or self.train_vocabulary is None:
            raise RuntimeError('MAFTPlusSegmentor.loss needs train_vocabulary and criterion in the config.')
        valid_shapes = self._valid_shapes(inputs, [s.metainfo for s in data_samples])
        inputs = self._pad(inputs)
        class_emb = self.class_embeddings(self.train_vocabulary)
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(self.backbone.trainable)):
            feats = self.backbone(inputs, token_layers=('res2', 'res3', 'res4', 'res5'))
        out = self.decode(feats.map(lambda t: t.detach()), class_emb)
        targets = targets_from_samples(data_samples, inputs.shape[-2:], inputs.device)
        losses = self.criterion(out, targets, rand=rand or torch_rand)
        clip_dense = feats.tokens['clip_vis_dense']
        if self.mask_aware_loss is not None:
            masks = out['pred_masks'].detach()
            emb, _, _ = self.transfer(clip_dense, class_emb)
            logits = self.out_vocab_classifier(self.backbone, clip_dense, masks, emb).logits
            losses['ranking_loss'] = self.mask_aware_loss(logits, masks, targets)
        if self.teacher is not None:
            with torch.no_grad():
                reference = self.teacher(inputs, token_layers=('res5',)).tokens['clip_vis_dense']
            losses['rc_loss'] = self.rc_loss(clip_dense, reference)
        return losses
