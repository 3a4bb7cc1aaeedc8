"""Dense features of a vision foundation model (DINO, DINOv2, MAE) through the ViT walker.

The timm trunk (:mod:`.vfm_loader`) is walked by :func:`.vit_walker.walk` like every other tower; only
the positional-embedding resize differs per original (:class:`VFMTower`). The feature handed to the
consumer is chosen by ``feature``:

==========  ========================================================================  ===================
feature     what                                                                      used by
==========  ========================================================================  ===================
'norm'      the final LayerNorm of the chosen block's output (``get_intermediate_    ProxyCLIP (DINO,
            layers(x, n=1)`` of DINO / DINOv2, MAE's ``forward_features``)           DINOv2, MAE)
'q+k'       the sum of the block's query and key projections (heads concatenated)   CorrCLIP
'q', 'k',   one projection of the block                                               ablations
'v'
'tokens'    the block's output tokens                                                 -
==========  ========================================================================  ===================

Prefix tokens (class, registers) are dropped from ``dense``; the class token is in ``cls_tokens``.
"""
import copy

import torch
from mmengine.model import BaseModule

from ovseg.models.backbones.pos_embed import POS_MODES, resize_pos_embed
from ovseg.models.backbones.vfm_loader import build_vfm
from ovseg.models.backbones.vit_dense import to_grid
from ovseg.models.backbones.vit_towers import TimmViTTower
from ovseg.models.backbones.vit_walker import walk
from ovseg.models.utils.dense_features import DenseFeatures
from ovseg.registry import MODELS

FEATURES = ('norm', 'q+k', 'q', 'k', 'v', 'tokens')


class VFMTower(TimmViTTower):
    """A timm ViT trunk whose positional embedding is resized as the original code resizes it.

    Args:
        trunk: timm ``VisionTransformer``.
        pos_mode (str): 'timm' (timm's antialiased bicubic resampling) or a mode of
            :data:`.pos_embed.POS_MODES` ('bicubic_scale' for DINO, 'bicubic' for MAE).
    """

    def __init__(self, trunk, pos_mode='timm'):
        super().__init__(trunk)
        if pos_mode != 'timm' and pos_mode not in POS_MODES:
            raise ValueError(f"pos_mode must be 'timm' or one of {POS_MODES}, got {pos_mode!r}")
        self.default_pos_mode = pos_mode

    def embed(self, images, pos_mode=None):
        """Patch embedding, prefix tokens and the resized positional embedding: (B, P + h * w, D), (h, w)."""
        mode = pos_mode or self.default_pos_mode
        if mode == 'timm':
            return super().embed(images, 'timm')
        t, pe = self.trunk, self.trunk.patch_embed
        x = pe.proj(images)
        grid = tuple(x.shape[-2:])
        x = pe.norm(x.flatten(2).transpose(1, 2))
        pos = t.pos_embed[0]
        no_embed_class = getattr(t, 'no_embed_class', False)
        if no_embed_class:  # the grid only: a placeholder class row for the resize
            pos = torch.cat([pos.new_zeros(1, pos.shape[-1]), pos])
        elif pos.shape[0] != 1 + pe.grid_size[0] * pe.grid_size[1]:
            raise NotImplementedError('positional embeddings over register tokens are not supported')
        pos = resize_pos_embed(pos, grid, mode, tuple(pe.grid_size)).to(x.dtype)
        prefix = [tok.expand(x.shape[0], -1, -1) for tok in (t.cls_token, getattr(t, 'reg_token', None))
                  if tok is not None]
        if no_embed_class:
            return torch.cat(prefix + [x + pos[1:]], dim=1), grid, None
        x = torch.cat(prefix[:1] + [x], dim=1) + pos
        return torch.cat([x[:, :1]] + prefix[1:] + [x[:, 1:]], dim=1), grid, None


@MODELS.register_module()
class VFMBackbone(BaseModule):
    """A frozen DINO / DINOv2 / MAE ViT returning the chosen layer's features as :class:`DenseFeatures`.

    Args:
        model_name (str): 'dino_vitb8' (default), 'dino_vits8', 'dino_vitb16', 'dino_vits16', 'dinov2_vitb14',
            'dinov2_vits14', 'dinov2_vitb14_reg', 'dinov2_vits14_reg', 'mae_vitb16', or a timm 'arch[.tag]'.
        pretrained (bool | str): timm's weights (from the cache, or downloaded when online): True for the
            name's tag, or a timm tag such as 'dino' (configs use the tag, so ``strip_weight_sources``
            removes it for random-weight runs). Default False.
        checkpoint (str, optional): local weights (official ``.pth`` or timm state dict).
        model_kwargs (dict, optional): timm architecture overrides (tests: ``depth``, ``embed_dim``, ...).
        feature (str): one of :data:`FEATURES` (module docstring). Default 'norm'.
        layer (int): block whose output / projections are used (negative from the end). Default -1.
        pos_mode (str, optional): positional-embedding resize; default the original's (:mod:`.vfm_loader`).
        mean, std (Sequence[float]): the normalisation the model expects on 0..1 RGB (ImageNet's).
        cache_dir (str, optional): Hugging Face cache folder.
    """

    def __init__(self, model_name='dino_vitb8', pretrained=False, checkpoint=None, model_kwargs=None,
                 feature='norm', layer=-1, pos_mode=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 cache_dir=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if feature not in FEATURES:
            raise ValueError(f'feature must be one of {FEATURES}, got {feature!r}')
        self.trunk, default_mode = build_vfm(model_name, pretrained, checkpoint, model_kwargs, cache_dir)
        self.pos_mode = pos_mode or default_mode or 'timm'
        self.tower = VFMTower(self.trunk, self.pos_mode)
        self.feature, self.layer = feature, int(layer)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    @property
    def stride(self):
        """Patch size (the output stride of ``dense``)."""
        return self.tower.patch_size

    @property
    def depth(self):
        """Number of blocks."""
        return len(self.tower.blocks)

    @property
    def embed_dim(self):
        return self.tower.width

    def train(self, mode=True):
        """The foundation model stays in eval mode (frozen)."""
        super().train(mode)
        self.trunk.eval()
        return self

    def forward(self, x):
        """(B, 3, H, W) images normalised with ``mean`` / ``std`` -> DenseFeatures (``dense`` (B, D, h, w))."""
        depth = len(self.tower.blocks)
        index = self.layer % depth
        taps = {'norm': [f'blocks.{index}'], 'tokens': [f'blocks.{index}'], 'q+k': [f'blocks.{index}.q',
                f'blocks.{index}.k'], 'q': [f'blocks.{index}.q'], 'k': [f'blocks.{index}.k'],
                'v': [f'blocks.{index}.v']}[self.feature]
        # stop after the chosen block: later blocks change nothing that is returned
        tower = copy.copy(self.tower)
        tower.blocks = self.tower.blocks[:index + 1]
        result = walk(tower, x, taps=taps)
        tokens = result.taps[taps[0]]
        if self.feature == 'q+k':
            tokens = tokens + result.taps[taps[1]]
        elif self.feature == 'norm':
            tokens = self.trunk.norm(tokens)
        grid, prefix = result.tap_layout[taps[0]]
        cls, dense = to_grid(tokens, grid, prefix)
        return DenseFeatures(dense=dense, cls_tokens={} if cls is None else {self.feature: cls})

