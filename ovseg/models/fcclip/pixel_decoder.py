"""FC-CLIP / Mask2Former pixel decoder: a deformable-attention encoder over the coarse levels plus an FPN."""
from dataclasses import dataclass
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ovseg.models.fcclip.ms_deform_attn import MSDeformAttn
from ovseg.models.fcclip.position_encoding import sine_position_encoding
from ovseg.registry import MODELS


@dataclass
class PixelDecoderOutput:
    """Outputs of :class:`FCCLIPPixelDecoder`.

    Attributes:
        mask_features (Tensor): (B, mask_dim, H/4, W/4) per-pixel embeddings the mask queries dot with.
        multi_scale_features (list[Tensor]): the first ``num_outs`` maps from coarse to fine (strides
            32, 16, 8 by default), each (B, conv_dim, h, w): the transformer decoder's memory.
    """

    mask_features: torch.Tensor
    multi_scale_features: List[torch.Tensor]


class MSDeformEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then a ReLU FFN.

    Args:
        embed_dim (int): channels. num_levels, num_heads, num_points: see :class:`MSDeformAttn`.
        ffn_dim (int): hidden width of the FFN (FC-CLIP hard-codes 1024).
        dropout (float): dropout after attention and in the FFN. Default 0.
        level_mismatch (str, optional): see :class:`MSDeformAttn`.
    """

    def __init__(self, embed_dim=256, ffn_dim=1024, dropout=0.0, num_levels=3, num_heads=8, num_points=4,
                 level_mismatch=None):
        super().__init__()
        self.self_attn = MSDeformAttn(embed_dim, num_levels, num_heads, num_points,
                                      level_mismatch=level_mismatch)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.linear1 = nn.Linear(embed_dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index):
        """(B, S, C) flattened levels -> (B, S, C)."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + self.dropout(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout(ffn))


class ConvGN(nn.Module):
    """Convolution without bias, GroupNorm, optional ReLU (the FPN's lateral and output convs)."""

    def __init__(self, in_channels, out_channels, kernel_size, num_groups=32, relu=False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.GroupNorm(num_groups, out_channels)
        self.relu = relu
        nn.init.kaiming_uniform_(self.conv.weight, a=1)  # detectron2's c2_xavier_fill

    def forward(self, x):
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


def _reference_points(spatial_shapes, batch, num_levels, device):
    """(B, S, L, 2) pixel-centre xy in [0, 1] of every flattened location, repeated for every level."""
    refs = []
    for h, w in spatial_shapes.tolist():
        ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                                      torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                                      indexing='ij')
        refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
    refs = torch.cat(refs, 0)
    return refs[None, :, None].expand(batch, -1, num_levels, -1)


def deformable_encode(srcs, level_embed, layers):
    """Deformable-attention encoder over flattened levels (Mask2Former's ``MSDeformAttnTransformerEncoderOnly``).

    Each level gets the sine positional encoding of its own grid plus its row of ``level_embed``; the
    layers attend across all levels; the output is split back into maps.

    Args:
        srcs (list[Tensor]): levels (B, C, h_l, w_l), coarse to fine.
        level_embed (Tensor): (L', C) with L' >= len(srcs) (rows beyond the given levels are unused).
        layers (Iterable[MSDeformEncoderLayer]): the encoder layers.

    Returns:
        list[Tensor]: the refined levels, same shapes as ``srcs``.
    """
    b, channels = srcs[0].shape[:2]
    spatial_shapes = torch.as_tensor([s.shape[-2:] for s in srcs], dtype=torch.long, device=srcs[0].device)
    level_start_index = torch.cat((spatial_shapes.new_zeros(1), spatial_shapes.prod(1).cumsum(0)[:-1]))
    src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    pos = torch.cat([sine_position_encoding(s, channels // 2).flatten(2).transpose(1, 2)
                     + level_embed[lvl].view(1, 1, -1) for lvl, s in enumerate(srcs)], 1)
    reference_points = _reference_points(spatial_shapes, b, len(srcs), src.device)
    for layer in layers:
        src = layer(src, pos, reference_points, spatial_shapes, level_start_index)
    sizes = spatial_shapes.prod(1).tolist()
    return [z.transpose(1, 2).reshape(b, -1, *s.shape[-2:]) for z, s in zip(src.split(sizes, 1), srcs)]


@MODELS.register_module()
class FCCLIPPixelDecoder(BaseModule):
    """Multi-scale deformable-attention pixel decoder of Mask2Former, as FC-CLIP configures it.

    Call graph::

        forward([res2, res3, res4, res5])
          ├─ input_proj (1x1 conv + GN) of the encoder levels, coarse to fine (res5, res4, res3)
          ├─ encoder_layers: deformable self-attention across the levels (+ sine PE + level_embed)
          ├─ FPN: fine levels (res2) = lateral conv + bilinear upsampling of the coarser output, 3x3 conv
          └─ mask_features: 1x1 conv of the finest map (stride 4)

    Args:
        in_channels (Sequence[int]): channels of the input maps, finest first (res2..res5).
        strides (Sequence[int]): their strides. Default (4, 8, 16, 32).
        encoder_in_indices (Sequence[int]): inputs the deformable encoder reads. Default (1, 2, 3).
        conv_dim (int): channels of every decoder map. Default 256.
        mask_dim (int): channels of ``mask_features``. Default 256.
        num_layers (int): deformable encoder layers. Default 6.
        num_heads (int): attention heads. Default 8.
        num_points (int): sampling points per head and level. Default 4.
        ffn_dim (int): encoder FFN width. Default 1024.
        dropout (float): encoder dropout. Default 0.
        num_groups (int): GroupNorm groups. Default 32.
        common_stride (int): stride of ``mask_features``. Default 4.
        num_outs (int): maps returned for the transformer decoder. Default 3.
    """

    def __init__(self, in_channels, strides=(4, 8, 16, 32), encoder_in_indices=(1, 2, 3), conv_dim=256,
                 mask_dim=256, num_layers=6, num_heads=8, num_points=4, ffn_dim=1024, dropout=0.0,
                 num_groups=32, common_stride=4, num_outs=3, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != len(strides):
            raise ValueError(f'in_channels {list(in_channels)} and strides {list(strides)} differ in length')
        self.strides = tuple(strides)
        self.encoder_in_indices = tuple(encoder_in_indices)
        self.conv_dim, self.num_outs = conv_dim, num_outs
        levels = len(self.encoder_in_indices)
        # coarse to fine, as the encoder flattens them (the original's order, so checkpoints map 1:1)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[i], conv_dim, kernel_size=1),
                          nn.GroupNorm(num_groups, conv_dim))
            for i in reversed(self.encoder_in_indices))
        self.level_embed = nn.Parameter(torch.zeros(levels, conv_dim))
        self.encoder_layers = nn.ModuleList(
            MSDeformEncoderLayer(conv_dim, ffn_dim, dropout, levels, num_heads, num_points)
            for _ in range(num_layers))
        min_stride = min(self.strides[i] for i in self.encoder_in_indices)
        # inputs finer than the encoder's finest level and not finer than common_stride get an FPN level
        self.fpn_indices = tuple(i for i, s in enumerate(self.strides) if common_stride <= s < min_stride)
        self.lateral_convs = nn.ModuleList(ConvGN(in_channels[i], conv_dim, 1, num_groups)
                                           for i in self.fpn_indices)
        self.output_convs = nn.ModuleList(ConvGN(conv_dim, conv_dim, 3, num_groups, relu=True)
                                          for _ in self.fpn_indices)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        self._init_layers()

    def _init_layers(self):
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        for layer in self.encoder_layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            layer.self_attn.init_weights()
        nn.init.normal_(self.level_embed)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.constant_(self.mask_features.bias, 0)

    def encode(self, feats):
        """Deformable encoder over the coarse levels -> their refined maps, coarse to fine."""
        srcs = [proj(feats[i].float()) for proj, i in zip(self.input_proj, reversed(self.encoder_in_indices))]
        return deformable_encode(srcs, self.level_embed, self.encoder_layers)

    def forward(self, feats):
        """Multi-scale maps (finest first, e.g. res2..res5) -> :class:`PixelDecoderOutput`.

        Runs in float32 even under autocast (the deformable sampling needs full precision).
        """
        with torch.autocast(feats[0].device.type, enabled=False):
            outs = self.encode(feats)
            for k, i in reversed(list(enumerate(self.fpn_indices))):
                lateral = self.lateral_convs[k](feats[i].float())
                up = F.interpolate(outs[-1], size=lateral.shape[-2:], mode='bilinear', align_corners=False)
                outs.append(self.output_convs[k](lateral + up))
            return PixelDecoderOutput(self.mask_features(outs[-1]), outs[:self.num_outs])
