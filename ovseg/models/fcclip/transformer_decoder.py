"""Mask2Former's masked-attention transformer decoder with FC-CLIP's text-space class head."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from ovseg.models.fcclip.position_encoding import sine_position_encoding
from ovseg.models.fcclip.transformer_layers import MLP, AttentionLayer, FFNLayer
from ovseg.registry import MODELS


@MODELS.register_module()
class FCCLIPTransformerDecoder(BaseModule):
    """Learnable queries refined by masked cross-attention over the pixel decoder's levels, round-robin.

    Call graph::

        forward(multi_scale_features, mask_features, class_embeddings)
          ├─ heads(query_feat)                       prediction 0: the learnable queries themselves
          └─ for layer i: cross-attn (masked by the previous prediction, level i % 3) ─ self-attn ─ FFN
                          ─ heads(...)               prediction i + 1
        heads(q): decoder_norm ─ mask_embed · mask_features -> masks; class_head -> logits;
                  masks resized to the next level, sigmoid < 0.5 -> attention mask (empty rows unmasked)

    Args:
        in_channels (int): channels of the pixel decoder's maps. Default 256.
        hidden_dim (int): query channels. Default 256.
        num_queries (int): queries. Default 250 (FC-CLIP's COCO setting).
        num_heads (int): attention heads. Default 8.
        ffn_dim (int): FFN width. Default 2048.
        num_layers (int): decoder layers (FC-CLIP's ``DEC_LAYERS - 1``). Default 9.
        pre_norm (bool): pre-LayerNorm layers. Default False.
        mask_dim (int): channels of the mask features. Default 256.
        num_levels (int): memory levels used round-robin. Default 3.
        enforce_input_proj (bool): 1x1 conv on the memory even if ``in_channels == hidden_dim``.
        class_head (dict): config of the class head. Default ``FCCLIPInVocabClassifier``.
    """

    def __init__(self, in_channels=256, hidden_dim=256, num_queries=250, num_heads=8, ffn_dim=2048,
                 num_layers=9, pre_norm=False, mask_dim=256, num_levels=3, enforce_input_proj=False,
                 class_head=dict(type='FCCLIPInVocabClassifier', hidden_dim=256, text_dim=768),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_heads, self.num_layers, self.num_levels = num_heads, num_layers, num_levels
        self.hidden_dim, self.num_queries = hidden_dim, num_queries
        self.cross_attn_layers = nn.ModuleList(
            AttentionLayer(hidden_dim, num_heads, pre_norm=pre_norm) for _ in range(num_layers))
        self.self_attn_layers = nn.ModuleList(
            AttentionLayer(hidden_dim, num_heads, pre_norm=pre_norm) for _ in range(num_layers))
        self.ffn_layers = nn.ModuleList(FFNLayer(hidden_dim, ffn_dim, pre_norm=pre_norm)
                                        for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_levels):
            if in_channels != hidden_dim or enforce_input_proj:
                proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                nn.init.kaiming_uniform_(proj.weight, a=1)
                nn.init.constant_(proj.bias, 0)
            else:
                proj = nn.Identity()
            self.input_proj.append(proj)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.class_head = MODELS.build(class_head)

    def _memory(self, feats):
        """Flatten each level -> lists of (B, HW, C) memory, (B, HW, C) positions, (h, w) sizes."""
        src, pos, sizes = [], [], []
        for i, x in enumerate(feats[:self.num_levels]):
            sizes.append(tuple(x.shape[-2:]))
            pos.append(sine_position_encoding(x, self.hidden_dim // 2).flatten(2).transpose(1, 2))
            mem = self.input_proj[i](x).flatten(2) + self.level_embed.weight[i][None, :, None]
            src.append(mem.transpose(1, 2))
        return src, pos, sizes

    def heads(self, output, mask_features, class_embeddings, attn_size):
        """Predictions for (B, Q, C) queries -> (class logits, mask logits, next layer's attention mask)."""
        queries = self.decoder_norm(output)
        masks = torch.einsum('bqc,bchw->bqhw', self.mask_embed(queries), mask_features)
        logits = self.class_head(queries, mask_features, masks, class_embeddings)
        attn = F.interpolate(masks, size=attn_size, mode='bilinear', align_corners=False)
        attn = (attn.sigmoid().flatten(2) < 0.5).detach()
        attn = attn.repeat_interleave(self.num_heads, dim=0)  # (B·heads, Q, HW), batch-major as torch expects
        return logits, masks, attn

    def forward(self, multi_scale_features, mask_features, class_embeddings, injector=None):
        """Decode queries into masks and class logits.

        Args:
            multi_scale_features (list[Tensor]): pixel decoder maps, coarse to fine, each (B, C, h, w).
            mask_features (Tensor): (B, mask_dim, H, W) (stride 4).
            class_embeddings (ClassEmbeddings): text rows with the void row last.
            injector (optional): extra inputs of a descendant model (FrozenSeg's SAM injectors), an object
                with ``memory(layer, level, src, pos, size) -> (memory, pos)`` (the tokens and key positions
                layer ``layer``'s masked cross-attention reads instead of level ``level``'s) and
                ``queries(layer, level, output, masks) -> output`` (applied after the prediction heads of
                layer ``layer``, so it changes what the next layer reads, not this prediction). None: FC-CLIP.

        Returns:
            dict: ``pred_logits`` (B, Q, K + 1), ``pred_masks`` (B, Q, H, W) of the last layer and
            ``aux_outputs``: the same for the learnable queries and every layer but the last.
        """
        src, pos, sizes = self._memory(multi_scale_features)
        b = mask_features.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(b, -1, -1)
        logits, masks, attn = self.heads(output, mask_features, class_embeddings, sizes[0])
        predictions = [(logits, masks)]
        for i in range(self.num_layers):
            level = i % self.num_levels
            attn = attn & ~attn.all(-1, keepdim=True)  # a query masked everywhere attends everywhere
            memory, memory_pos = src[level], pos[level]
            if injector is not None:
                memory, memory_pos = injector.memory(i, level, memory, memory_pos, sizes[level])
            output = self.cross_attn_layers[i](output, memory, attn_mask=attn, pos=memory_pos,
                                               query_pos=query_pos)
            output = self.self_attn_layers[i](output, query_pos=query_pos)
            output = self.ffn_layers[i](output)
            logits, masks, attn = self.heads(output, mask_features, class_embeddings,
                                             sizes[(i + 1) % self.num_levels])
            predictions.append((logits, masks))
            if injector is not None:
                output = injector.queries(i, level, output, masks)
        return dict(pred_logits=predictions[-1][0], pred_masks=predictions[-1][1],
                    aux_outputs=[dict(pred_logits=c, pred_masks=m) for c, m in predictions[:-1]])
