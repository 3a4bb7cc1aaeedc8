"""FrozenSeg: FC-CLIP with frozen SAM features injected into the decoder and a SAM mask-proposal ensemble."""
import copy

import torch
import torch.nn.functional as F

from ovseg.models.fcclip.segmentor import FCCLIPSegmentor
from ovseg.models.frozenseg.proposal_ensemble import proposal_ensemble, proposals_for_pooling
from ovseg.models.utils.precision import upcast
from ovseg.registry import MODELS

CLIP_MEAN = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)
# what each behaviour sets in the parts (explicit part settings win)
BEHAVIOURS = {
    'released': dict(level_mismatch='cuda_kernel', key_pos='none', proposal_pooling='released'),
    'corrected': dict(level_mismatch='fold', key_pos='clip', proposal_pooling='aligned'),
}


@MODELS.register_module()
class FrozenSegSegmentor(FCCLIPSegmentor):
    """FrozenSeg (Chen et al., 2024): FC-CLIP's frozen CLIP and heads plus a frozen SAM image encoder.

    Call graph (on top of :class:`FCCLIPSegmentor`)::

        extract_feat(inputs, valid_shapes)      CLIP features + tokens['sam_embedding']:
                                                undo the CLIP normalisation, SAM normalisation, zero
                                                padding to size_divisor, bilinear resize to 1024 x 1024
                                                (aspect not kept), SAM image encoder (SAMPredictor)
        decode(feats, class_embeddings)
          ├─ pixel_decoder (FC-CLIP)            CLIP branch
          ├─ sam_branch (FrozenSegSAMBranch)    strided conv + deformable encoder on the SAM embedding
          └─ transformer_decoder (FC-CLIP) with injector.bind(...) (FrozenSegInjector): feature injector
             (CLIP tokens attend to SAM tokens) and query injector (mask-pooled SAM embedding added)
        classify_masks / class_probabilities / postprocess   FC-CLIP's (geometric ensemble)
        semantic_fn                             with ``use_proposals``: the SAM mask-proposal ensemble on
                                                ``sample.metainfo['sam_proposal_logits']`` (M, H, W)

    ``behaviour`` picks the released model's defects or their corrections (set in the parts unless a
    part's config sets them itself):

    ============================ =================================== ===================================
    part                          'released' (default: what the       'corrected'
                                  released weights were trained with)
    ============================ =================================== ===================================
    SAM branch deformable attn.   3-level offsets read with the       each query samples its 12 points
    (``level_mismatch``)          compiled kernel's 1-level stride    on the one map ('fold')
                                  ('cuda_kernel')
    masked cross-attention after  no key positional encoding          the level's sine PE ('clip')
    the feature injector          ('none')
    proposal pooling              nearest resize to the CLIP grid,    resize to the input, pad, resize to
    (``proposal_pooling``)        zero-padded to 32 ('released')      the grid as FC-CLIP's masks
                                                                      ('aligned')
    ============================ =================================== ===================================

    The released proposal ensemble cannot run as released (its dataset name is only set outside
    training mode at construction, which never happens: AttributeError); here it runs as its code reads.

    Args:
        sam (dict): ``SAMPredictor`` config (FrozenSeg: 'vit_b', the official ``sam_vit_b_01ec64.pth``).
            Its ``prompt_dim`` (image-embedding width) must equal the decoder width.
        sam_branch (dict): ``FrozenSegSAMBranch`` (defaults: the pixel decoder's sizes).
        injector (dict): ``FrozenSegInjector`` (defaults: the decoder's sizes; feature level 0, query
            level 2 as released).
        behaviour (str): 'released' (default) or 'corrected'.
        use_proposals (bool): apply the mask-proposal ensemble (the original's ``TEST.USE_SAM_MASKS``,
            False in every released config); then every sample needs proposals. Default False.
        proposal_ensemble (dict): ``alpha`` (0.2, ``TEST.SAM_MASK_PRED_ALPHA``), ``keep_threshold`` (0.5),
            ``pooling`` (from ``behaviour``).
        pixel_mean, pixel_std (Sequence[float]): the normalisation of the inputs (the data preprocessor's,
            CLIP's), undone before SAM's own.
        **kwargs: :class:`FCCLIPSegmentor` arguments.
    """

    def __init__(self, backbone, pixel_decoder, transformer_decoder, vocabulary,
                 sam=dict(type='SAMPredictor', arch='vit_b'), sam_branch=dict(type='FrozenSegSAMBranch'),
                 injector=dict(type='FrozenSegInjector'), behaviour='released', use_proposals=False,
                 proposal_ensemble=None, pixel_mean=CLIP_MEAN, pixel_std=CLIP_STD, **kwargs):
        if behaviour not in BEHAVIOURS:
            raise ValueError(f'behaviour must be one of {sorted(BEHAVIOURS)}, got {behaviour!r}')
        super().__init__(backbone, pixel_decoder, transformer_decoder, vocabulary, **kwargs)
        self.behaviour = behaviour
        choice = BEHAVIOURS[behaviour]
        self.sam = MODELS.build(sam)
        decoder = self.transformer_decoder
        width = self.sam.model.image_encoder.neck[0].out_channels
        if width != self.pixel_decoder.conv_dim or width != decoder.hidden_dim:
            raise ValueError(f'FrozenSeg needs the SAM embedding width ({width}) to equal the pixel decoder '
                             f'({self.pixel_decoder.conv_dim}) and decoder ({decoder.hidden_dim}) widths.')
        sam_branch = copy.deepcopy(dict(sam_branch))
        sam_branch.setdefault('channels', width)
        sam_branch.setdefault('num_levels', len(self.pixel_decoder.encoder_in_indices))
        sam_branch.setdefault('num_layers', len(self.pixel_decoder.encoder_layers))
        attn = self.pixel_decoder.encoder_layers[0].self_attn if len(self.pixel_decoder.encoder_layers) else None
        if attn is not None:
            sam_branch.setdefault('num_heads', attn.num_heads)
            sam_branch.setdefault('num_points', attn.num_points)
            sam_branch.setdefault('ffn_dim', self.pixel_decoder.encoder_layers[0].linear1.out_features)
        sam_branch.setdefault('num_groups', self.pixel_decoder.input_proj[0][1].num_groups)
        sam_branch.setdefault('level_mismatch', choice['level_mismatch'])
        self.sam_branch = MODELS.build(sam_branch)
        injector = dict(injector)
        for key in ('hidden_dim', 'num_heads', 'num_layers', 'num_levels'):
            injector.setdefault(key, getattr(decoder, key))
        injector.setdefault('pre_norm', decoder.cross_attn_layers[0].pre_norm if decoder.num_layers else False)
        injector.setdefault('key_pos', choice['key_pos'])
        self.injector = MODELS.build(injector)
        self.use_proposals = bool(use_proposals)
        self.proposal_cfg = {**dict(alpha=0.2, keep_threshold=0.5, pooling=choice['proposal_pooling']),
                             **(proposal_ensemble or {})}
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), False)

    # -------------------------------------------------------------------------------------- SAM input
    def sam_inputs(self, inputs, valid_shapes=None):
        """SAM's input as FrozenSeg builds it at test time from (B, 3, H, W) CLIP-normalised images.

        Each image is brought back to 0-255 RGB, normalised with SAM's mean / std, zero outside its
        valid (unpadded) region (the original pads the SAM-normalised image), and the padded batch is
        resized bilinearly to SAM's square input (aspect ratio not kept; the identity for 1024 crops,
        FrozenSeg's training inputs).

        Returns:
            Tensor: (B, 3, S, S), S = the SAM image size.
        """
        x = self.sam.normalize(inputs.float() * self.pixel_std + self.pixel_mean)
        if valid_shapes is not None:
            keep = torch.zeros_like(x[:, :1])
            for i, (h, w) in enumerate(valid_shapes):
                keep[i, :, :h, :w] = 1
            x = x * keep
        size = self.sam.image_size
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False)
        return x

    def extract_feat(self, inputs, valid_shapes=None):
        """CLIP ``DenseFeatures`` with the SAM image embedding in ``tokens['sam_embedding']``."""
        feats = super().extract_feat(inputs, valid_shapes)
        feats.tokens['sam_embedding'] = self.sam.encode(self.sam_inputs(inputs, valid_shapes))
        return feats

    def decode(self, feats, class_embeddings):
        """FC-CLIP's pixel decoder and decoder with the SAM branch and injectors; adds ``sam_feature``."""
        stages = [feats.tokens[name] for name in ('res2', 'res3', 'res4', 'res5')]
        pix = self.pixel_decoder(stages)
        sam_embedding = feats.tokens['sam_embedding']
        sam_feature = self.sam_branch(sam_embedding)
        decoder = self.transformer_decoder
        context = self.injector.bind(sam_feature, sam_embedding, decoder.level_embed.weight[0],
                                     decoder.class_head.pool_proj, pix.multi_scale_features[0].shape[-2:])
        out = decoder(pix.multi_scale_features, pix.mask_features, class_embeddings, injector=context)
        out.update(pixel_decoder=pix, sam_feature=sam_feature)
        return out

    # ------------------------------------------------------------------------------ proposal ensemble
    def classify_proposals(self, out, index, proposal_logits, valid_shape):
        """CLIP logits (M, K + 1) of one image's proposal masks (FC-CLIP's out-of-vocabulary classifier)."""
        clip = out['features'].tokens['clip_vis_dense'][index:index + 1]
        pooling = proposals_for_pooling(proposal_logits.to(clip.device), clip.shape[-2:], self.size_divisor,
                                        valid_shape, out['padded_shape'], self.proposal_cfg['pooling'])
        with self._autocast(clip.device):
            ov = self.out_vocab_classifier(self.backbone, clip, pooling, self.class_embeddings())
        return upcast(ov)

    def semantic_fn(self, out, index, meta):
        """With ``use_proposals``: the proposal ensemble for this image (proposals from its metainfo)."""
        if not self.use_proposals:
            return None
        proposals = meta.get('sam_proposal_logits')
        if proposals is None:
            raise KeyError("use_proposals needs sample.metainfo['sam_proposal_logits'] (M, H, W) mask logits "
                           "(pipeline: LoadSAMProposals, PackSegInputs meta_keys with 'sam_proposal_logits')")
        if meta.get('flip', False):
            raise NotImplementedError('the proposal ensemble does not support flipped inputs (TTA)')
        proposals = torch.as_tensor(proposals, dtype=torch.float32, device=out['pred_masks'].device)
        img_shape = tuple(meta['img_shape'][:2])
        cls = self.classify_proposals(out, index, proposals, img_shape).logits[0] if len(proposals) else None
        cfg, seen = self.proposal_cfg, self.seen_mask
        padded_masks = not (self.test_cfg['panoptic_on'] or self.test_cfg['instance_on'])

        def semantic(mask_cls, masks, mask_prob=None):
            if padded_masks:  # semantic only: at the input size, then resized (as the original)
                masks = masks[:, :img_shape[0], :img_shape[1]]
            if cls is None:
                return torch.einsum('qc,qhw->chw', F.softmax(mask_cls, -1)[:, :-1], masks.sigmoid())
            props = proposals if proposals.shape[-2:] == masks.shape[-2:] else F.interpolate(
                proposals[None], size=masks.shape[-2:], mode='bilinear', align_corners=False)[0]
            return proposal_ensemble(mask_cls, masks, props, cls, seen, cfg['alpha'], cfg['keep_threshold'])[0]
        return semantic
