"""Frozen open_clip backbone returning :class:`DenseFeatures` for ViT, ResNet and ConvNeXt towers."""
import torch
from mmengine.model import BaseModule

from ovseg.models.backbones.convnext_dense import convnext_dense_forward, convnext_project
from ovseg.models.backbones.open_clip_loader import build_open_clip
from ovseg.models.backbones.resnet_dense import resnet_dense_forward
from ovseg.models.backbones.vit_dense import MASKCLIP_ATTENTION, vit_dense_forward
from ovseg.models.backbones.vit_towers import is_vit_tower, vit_tower
from ovseg.models.backbones.vit_walker import build_strategies
from ovseg.registry import MODELS


def _tower_kind(visual):
    name = type(visual).__name__
    if name == 'ModifiedResNet':
        return 'resnet'
    if name == 'TimmModel' and 'convnext' in type(visual.trunk).__name__.lower():
        return 'convnext'
    if is_vit_tower(visual):
        return 'vit'
    raise NotImplementedError(f'No dense-feature path for open_clip vision tower {name}; supported: '
                              f'VisionTransformer, timm ViT / EVA towers, ModifiedResNet, timm ConvNeXt.')


@MODELS.register_module()
class OpenCLIPBackbone(BaseModule):
    """A frozen open_clip CLIP model whose forward returns dense features.

    The whole CLIP model (both towers) is held as ``self.clip`` so the text side
    (:class:`OVTextClassifier`) encodes prompts with the same weights; its parameters never train.

    Args:
        model_name (str): open_clip architecture name. Default 'ViT-B-16'.
        pretrained (str, optional): open_clip pretrained tag (downloaded only if the hub answers).
        checkpoint (str, optional): local open_clip state-dict file (``weights_only=True``).
        arch (dict, optional): inline open_clip config instead of ``model_name`` (tiny test models).
        cache_dir (str, optional): download cache for pretrained tags.
        token_layers (Sequence[str]): intermediates to return in ``DenseFeatures.tokens`` (ViT: submodules
            of ``visual.transformer`` such as 'resblocks.-3.ln_2', or 'last_keys'; ResNet: 'layer1'..'layer4';
            ConvNeXt: 'res2'..'res5').
        with_global (bool): also return the pooled image embedding. Default False.
        trainable (Sequence[str]): submodules of ``self.clip`` (name prefixes, e.g. 'visual.trunk.stages')
            whose parameters train; everything else stays frozen. Default () (all frozen). MAFT+
            fine-tunes its ConvNeXt trunk this way.
        train_mode (Sequence[str], optional): submodules that follow ``train()`` (drop path active in
            training); the rest stays in eval mode. Default: ``trainable``.
        attention (Sequence[dict]): ViT only: per-block attention strategies
            (:mod:`ovseg.models.backbones.attention_strategies`), each a config with ``blocks`` (an index,
            a list, 'all' or ``dict(start, stop)``); other blocks run as trained. Default MaskCLIP's value
            path in the last block. E.g. SCLIP: ``[dict(type='CorrelativeAttention', blocks=-1)]``.
        pos_mode (str, optional): ViT only: positional-embedding resize for other input sizes
            (:mod:`ovseg.models.backbones.pos_embed`): 'bicubic' (default for open_clip ViTs),
            'bilinear', 'bicubic_scale' (SCLIP / ClearCLIP / NACLIP).
    """

    def __init__(self, model_name='ViT-B-16', pretrained=None, checkpoint=None, arch=None, cache_dir=None,
                 token_layers=(), with_global=False, trainable=(), train_mode=None, attention=MASKCLIP_ATTENTION,
                 pos_mode=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.clip = build_open_clip(model_name, pretrained, checkpoint, arch, cache_dir)
        self.clip.requires_grad_(False)
        self.trainable = tuple(trainable)
        self.train_mode = self.trainable if train_mode is None else tuple(train_mode)
        for prefix in self.trainable:
            self._submodule(prefix).requires_grad_(True)
        self.kind = _tower_kind(self.clip.visual)
        self.model_name = model_name if arch is None else 'custom'
        self.context_length = int(getattr(self.clip, 'context_length', 77))
        self.token_layers = tuple(token_layers)
        self.with_global = with_global
        self.pos_mode = pos_mode
        self.attention = attention
        self._strategies = None
        if self.kind == 'vit':
            self._strategies = build_strategies(attention, len(vit_tower(self.clip.visual).blocks))
        elif attention is not MASKCLIP_ATTENTION and attention:
            raise ValueError(f'attention strategies apply to ViT towers; this is a {self.kind} tower.')
        self._tokenizer = None

    @property
    def stride(self):
        """Output stride of the dense map (patch size for ViT, 32 for ResNet/ConvNeXt)."""
        if self.kind == 'vit':
            return vit_tower(self.clip.visual).patch_size
        return 32

    @property
    def stage_channels(self):
        """ConvNeXt: channels of res2..res5 (FC-CLIP's pixel decoder inputs)."""
        if self.kind != 'convnext':
            raise NotImplementedError('stage_channels is defined for ConvNeXt towers only.')
        return [int(info['num_chs']) for info in self.clip.visual.trunk.feature_info]

    @property
    def strategies(self):
        """ViT: {block index: attention strategy} of the blocks that do not run as trained."""
        return dict(self._strategies or {})

    @property
    def embed_dim(self):
        """Channels of the joint image-text space."""
        return int(self.clip.text_projection.shape[-1]) if getattr(self.clip, 'text_projection', None) \
            is not None else int(self.clip.visual.output_dim)

    @property
    def tokenizer(self):
        """open_clip tokenizer of this architecture (SimpleTokenizer for inline configs)."""
        if self._tokenizer is None:
            import open_clip
            if self.model_name == 'custom':
                self._tokenizer = open_clip.SimpleTokenizer(context_length=self.context_length)
            else:
                self._tokenizer = open_clip.get_tokenizer(self.model_name)
        return self._tokenizer

    def _submodule(self, prefix):
        try:
            return self.clip.get_submodule(prefix)
        except AttributeError as err:
            raise ValueError(f'OpenCLIPBackbone: no submodule {prefix!r} in the CLIP model') from err

    def train(self, mode=True):
        """The CLIP model stays in eval mode (frozen, no dropout), except the ``train_mode`` submodules."""
        super().train(mode)
        self.clip.eval()
        for prefix in self.train_mode:
            self._submodule(prefix).train(mode)
        return self

    def forward(self, x, token_layers=None, with_global=None, external=None, head=True):
        """(B, 3, H, W) normalised images -> :class:`DenseFeatures` (H, W multiples of ``stride``).

        ``external`` (ViT): inputs of strategies that take them, e.g. ``{'affinity': Affinity(...)}``.
        ``head=False`` (ViT): ``dense`` holds the tokens after the last block, before the tower head
        (``ln_post`` and ``proj``), for methods that mix them first (Trident); :meth:`project_dense` applies
        the head later.
        """
        token_layers = self.token_layers if token_layers is None else tuple(token_layers)
        with_global = self.with_global if with_global is None else with_global
        if self.kind == 'vit':
            return vit_dense_forward(self.clip.visual, x, token_layers, with_global, external=external,
                                     pos_mode=self.pos_mode, strategies=self._strategies, head=head)
        if external or not head:
            raise ValueError(f'external inputs are read by ViT attention strategies; this is a {self.kind} tower.')
        forward = {'resnet': resnet_dense_forward, 'convnext': convnext_dense_forward}[self.kind]
        if self.kind == 'convnext' and not token_layers:
            token_layers = ('res2', 'res3', 'res4', 'res5')
        return forward(self.clip.visual, x, token_layers, with_global)

    def project_dense(self, dense):
        """ViT only: (B, D, h, w) tokens before the tower head -> (B, C, h, w) through ``ln_post`` and
        ``proj`` (what ``head=True`` applies inside :meth:`forward`)."""
        if self.kind != 'vit':
            raise NotImplementedError('project_dense is defined for ViT towers only.')
        b, d, h, w = dense.shape
        out = vit_tower(self.clip.visual).head_tokens(dense.flatten(2).transpose(1, 2))
        return out.transpose(1, 2).reshape(b, -1, h, w)

    def project_pooled(self, feats):
        """ConvNeXt only: (N, C) pooled stage-4 features -> (N, E) through the CLIP head (FC-CLIP)."""
        if self.kind != 'convnext':
            raise NotImplementedError('project_pooled is defined for ConvNeXt towers only.')
        return convnext_project(self.clip.visual, feats)

    @torch.no_grad()
    def encode_tokens(self, tokens):
        """Text tower: (N, L) token ids -> (N, E) unnormalised embeddings, trimmed to the longest prompt."""
        from ovseg.models.text_encoders.trimmed_text import encode_text_trimmed
        return encode_text_trimmed(self.clip, tokens)
