"""SAM's image encoder as a feature source (ProxyCLIP's ``vfm_model='sam'`` proxy).

ProxyCLIP (mc-lan/ProxyCLIP ``proxyclip_segmentor.py``) resizes the ImageNet-normalised window to
1024 x 1024 (bilinear) and takes ``sam.image_encoder``'s output, the neck's 256-channel 64 x 64 map,
as the proxy features; the original loads ``sam_model_registry['vit_b']``. SAM's own pixel
normalisation (mean 123.675, 116.28, 103.53 / std 58.395, 57.12, 57.375 on 0..255) equals ImageNet's on
0..1, so the same input serves. The encoder (windowed attention, relative positions, neck) is not a
plain ViT tower: it runs as segment-anything builds it, it is not walked.
"""
from mmengine.model import BaseModule

from ovseg.models.utils.dense_features import DenseFeatures
from ovseg.models.utils.vfm_input import IMAGENET_MEAN, IMAGENET_STD
from ovseg.registry import MODELS


@MODELS.register_module()
class SAMEncoderBackbone(BaseModule):
    """A frozen SAM image encoder returning its neck features as :class:`DenseFeatures`.

    Args:
        arch (str): 'vit_b' (ProxyCLIP's), 'vit_l', 'vit_h' or 'tiny' (tests). Default 'vit_b'.
        checkpoint (str, optional): the official ``sam_vit_*.pth`` (read with ``weights_only=True``).
        image_size (int): encoder input side; 1024 for the released weights. The caller resizes the input
            to it (``ProxyCLIPSegmentor(vfm_input_size=(1024, 1024))``).
    """

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
