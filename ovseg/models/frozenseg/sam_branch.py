"""FrozenSeg's SAM branch of the pixel decoder: a strided conv on the SAM image embedding, then a deformable
encoder built from FC-CLIP's encoder layers."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ovseg.models.fcclip.pixel_decoder import MSDeformEncoderLayer, deformable_encode
from ovseg.registry import MODELS


@MODELS.register_module()
class FrozenSegSAMBranch(BaseModule):
    """SAM image embedding (B, C, 64, 64) -> (B, C, 32, 32) spatial features for the decoder's injectors.

    Call graph::

        forward(sam_embedding)
          ├─ fpn: 3x3 conv stride 2 (bias) ─ GroupNorm ─ ReLU       (the original's ``fpn3``)
          └─ deformable_encode over that one map (sine PE + level_embed[0])   (``sam_transformer``)

    The original builds this encoder with as many levels as the CLIP branch (3) but feeds it one map.
    ``level_mismatch`` says how the deformable attention reconciles them (:class:`MSDeformAttn`):
    'cuda_kernel' reproduces the compiled kernel the released weights were trained with (queries read
    other queries' offsets, weights and reference points); 'fold' lets every query sample all of its
    configured points on the one map with its own offsets and weights.

    Args:
        channels (int): width of the SAM embedding and of the decoder (the original requires them equal).
            Default 256.
        num_layers (int): deformable encoder layers (the CLIP branch's count). Default 6.
        num_heads (int): attention heads. Default 8.
        num_points (int): sampling points per head and level. Default 4.
        num_levels (int): levels the encoder is built for (the CLIP branch's, 3). Default 3.
        ffn_dim (int): encoder FFN width. Default 1024.
        dropout (float): encoder dropout. Default 0.
        num_groups (int): GroupNorm groups. Default 32.
        level_mismatch (str): 'cuda_kernel' (released, default) or 'fold' (corrected).
    """

    def __init__(self, channels=256, num_layers=6, num_heads=8, num_points=4, num_levels=3, ffn_dim=1024,
                 dropout=0.0, num_groups=32, level_mismatch='cuda_kernel', init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fpn = nn.Sequential(nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1),
                                 nn.GroupNorm(num_groups, channels), nn.ReLU(inplace=True))
        self.level_embed = nn.Parameter(torch.zeros(num_levels, channels))
        self.encoder_layers = nn.ModuleList(
            MSDeformEncoderLayer(channels, ffn_dim, dropout, num_levels, num_heads, num_points,
                                 level_mismatch=level_mismatch if num_levels != 1 else None)
            for _ in range(num_layers))
        for layer in self.encoder_layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            layer.self_attn.init_weights()
        nn.init.normal_(self.level_embed)

    def forward(self, sam_embedding):
        """(B, C, H, W) SAM image embedding -> (B, C, H/2, W/2) encoded features (float32)."""
        with torch.autocast(sam_embedding.device.type, enabled=False):
            feat = self.fpn(sam_embedding.float())
            return deformable_encode([feat], self.level_embed, self.encoder_layers)[0]


def resize_to(x, size):
    """Bilinear resize (align_corners False) of (B, C, h, w) to ``size`` unless it already has it."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=tuple(size), mode='bilinear',
                                                                      align_corners=False)
