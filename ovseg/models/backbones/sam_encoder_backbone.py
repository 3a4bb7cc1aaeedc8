"""SAM's image encoder as a feature source (ProxyCLIP's ``vfm_model='sam'`` proxy).

ProxyCLIP (mc-lan/ProxyCLIP ``proxyclip_segmentor.py``) resizes the ImageNet-normalised window to
1024 x 1024 (bilinear) and takes ``sam.image_encoder``'s output, the neck's 256-channel 64 x 64 map,
as the proxy features; the original loads ``sam_model_registry['vit_b']``. SAM's own pixel
normalisation (mean 123.675, 116.28, 103.53 / std 58.395, 57.12, 57.375 on 0..255) equals ImageNet's on
0..1, so the same input serves. The encoder (windowed attention, relative positions, neck) is not a
plain ViT tower: it runs as segment-anything builds it, it is not walked.

Trident reads the **last block's attention** as well (its values and softmax weights, relative positions
included, feed the SAM-correlation aggregation of :mod:`ovseg.models.refiners.sam_correlation`):
:func:`encode_with_last_attention` runs the encoder once and hands those weights, a few heads at a time,
to a consumer, so the (heads, 4096, 4096) map is never held whole, and the neck embedding the refinement
prompts against comes out of the same pass.
"""
import torch
from mmengine.model import BaseModule

from ovseg.models.utils.dense_features import DenseFeatures
from ovseg.models.utils.vfm_input import IMAGENET_MEAN, IMAGENET_STD
from ovseg.registry import MODELS


def encode_with_last_attention(encoder, x, consume, head_chunk=2):
    """Run segment-anything's ``ImageEncoderViT`` and show its last block's attention to ``consume``.

    Every block but the last runs as built. The last one (a global-attention block) is computed as
    segment-anything's ``Attention`` does (q·k scaled, decomposed relative positions added, softmax over
    all keys, values, projection), ``head_chunk`` heads at a time; once its weights are applied,
    ``consume(attn, v, heads)`` receives them (and may overwrite them): ``attn`` (B, c, L, L) softmax
    weights of the heads in ``heads`` (a ``range``), ``v`` (B, heads, L, d) the values of every head
    (L = g·g tokens of the g x g grid, row-major). The block's MLP and the neck follow.

    Args:
        encoder: ``segment_anything.modeling.ImageEncoderViT``.
        x (Tensor): (B, 3, S, S) preprocessed input (SAM's normalisation, padded square).
        consume (Callable): called once per head chunk, in head order.
        head_chunk (int): heads computed together (memory: ``head_chunk * L * L`` floats). Default 2.

    Returns:
        Tensor: (B, C, g, g) the encoder's output (the neck's embedding), as ``encoder(x)``.
    """
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos
    x = encoder.patch_embed(x)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    for block in encoder.blocks[:-1]:
        x = block(x)
    block, attn = encoder.blocks[-1], encoder.blocks[-1].attn
    if block.window_size:
        raise ValueError('the last SAM encoder block uses windowed attention; its attention over the image '
                         'is only defined for a global block (every released SAM ends with one).')
    b, h, w, _ = x.shape
    heads = attn.num_heads
    qkv = attn.qkv(block.norm1(x)).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # (B, heads, L, d)
    out = []
    for start in range(0, heads, max(int(head_chunk), 1)):
        sl = slice(start, min(start + max(int(head_chunk), 1), heads))
        qc = q[:, sl].reshape(-1, h * w, q.shape[-1])
        logits = (qc * attn.scale) @ k[:, sl].reshape(-1, h * w, k.shape[-1]).transpose(-2, -1)
        if attn.use_rel_pos:
            logits = add_decomposed_rel_pos(logits, qc, attn.rel_pos_h, attn.rel_pos_w, (h, w), (h, w))
        weights = logits.softmax(dim=-1).view(b, -1, h * w, h * w)
        out.append(weights @ v[:, sl])
        consume(weights, v, range(sl.start, sl.stop))  # after use: the consumer may overwrite them
    y = torch.cat(out, dim=1).view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    x = x + attn.proj(y)
    x = x + block.mlp(block.norm2(x))
    return encoder.neck(x.permute(0, 3, 1, 2))


@MODELS.register_module()
class SAMEncoderBackbone(BaseModule):
    """A frozen SAM image encoder returning its neck features as :class:`DenseFeatures`.

    Args:
        arch (str): 'vit_b' (ProxyCLIP's), 'vit_l', 'vit_h' or 'tiny' (tests). Default 'vit_b'.
        checkpoint (str, optional): the official ``sam_vit_*.pth`` (read with ``weights_only=True``).
        image_size (int): encoder input side; 1024 for the released weights. The caller resizes the input
            to it (``ProxyCLIPSegmentor(vfm_input_size=(1024, 1024))``).
    """

    stage_submodules = ('encoder',)  # StageTimer: segment-anything's ImageEncoderViT

    def __init__(self, arch='vit_b', checkpoint=None, image_size=1024, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        predictor = MODELS.build(dict(type='SAMPredictor', arch=arch, checkpoint=checkpoint, image_size=image_size))
        self.encoder = predictor.model.image_encoder
        self.encoder.requires_grad_(False)
        self.image_size = int(image_size)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    @property
    def stride(self):
        return 16

    @property
    def embed_dim(self):
        return int(self.encoder.neck[-2].out_channels) if hasattr(self.encoder, 'neck') else 256

    def train(self, mode=True):
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x):
        """(B, 3, S, S) ImageNet-normalised images, S = ``image_size`` -> DenseFeatures (B, 256, S/16, S/16)."""
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f'SAM\'s encoder takes {self.image_size} x {self.image_size} inputs, got '
                             f'{tuple(x.shape[-2:])}; set vfm_input_size=({self.image_size}, {self.image_size}).')
        return DenseFeatures(dense=self.encoder(x))
