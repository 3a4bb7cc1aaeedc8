"""A tiny FC-CLIP model config: tiny ConvNeXt CLIP, 2 encoder layers, 2 decoder layers, 8 queries."""
import copy

from .tiny import CLIP_MEAN_255, CLIP_STD_255, tiny_clip_arch


def tiny_fcclip_cfg(vocabulary=('cat', 'dog', 'grass'), train_vocabulary=('cat', 'person', 'grass'),
                    thing_classes=None, **overrides):
    """Model config of an ``FCCLIPSegmentor`` with random weights that runs in well under a second.

    Args:
        vocabulary: test vocabulary. Default ('cat', 'dog', 'grass').
        train_vocabulary: training vocabulary (seen classes, loss classes).
            Default ('cat', 'person', 'grass').
        thing_classes: thing classes of ``vocabulary``; None = all.
        **overrides: top-level keys replaced in the returned dict.
    """
    dim = 32
    cfg = dict(
        type='FCCLIPSegmentor',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255,
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size_divisor=32),
        backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('convnext')),
        pixel_decoder=dict(type='FCCLIPPixelDecoder', conv_dim=dim, mask_dim=dim, num_layers=2, num_heads=2,
                           num_points=2, ffn_dim=64, num_groups=8),
        transformer_decoder=dict(type='FCCLIPTransformerDecoder', in_channels=dim, hidden_dim=dim,
                                 num_queries=8, num_heads=2, ffn_dim=64, num_layers=2, mask_dim=dim,
                                 class_head=dict(type='FCCLIPInVocabClassifier', hidden_dim=dim,
                                                 text_dim=32)),
        text_classifier=dict(type='OVTextClassifier', templates='single', cache_dir=None),
        criterion=dict(type='MaskSetCriterion', num_points=64),
        vocabulary=list(vocabulary),
        train_vocabulary=list(train_vocabulary),
        thing_classes=thing_classes,
        test_cfg=dict(max_per_image=10))
    cfg.update(copy.deepcopy(overrides))
    return cfg


def tiny_frozenseg_cfg(vocabulary=('cat', 'dog', 'grass'), train_vocabulary=('cat', 'person', 'grass'),
                       thing_classes=None, **overrides):
    """A tiny ``FrozenSegSegmentor``: the tiny FC-CLIP with 4 decoder layers (so the query injector after
    layer 2 changes the output) and a tiny SAM (64-d, 2 blocks, 128 px input, 32-d embedding)."""
    cfg = tiny_fcclip_cfg(vocabulary, train_vocabulary, thing_classes)
    cfg['type'] = 'FrozenSegSegmentor'
    cfg['transformer_decoder']['num_layers'] = 4
    cfg['sam'] = dict(type='SAMPredictor', arch='tiny', image_size=128, prompt_dim=32)
    cfg.update(copy.deepcopy(overrides))
    return cfg


def tiny_maftplus_cfg(vocabulary=('cat', 'dog', 'grass'), train_vocabulary=('cat', 'person', 'grass'),
                      thing_classes=None, teacher=True, **overrides):
    """A tiny ``MAFTPlusSegmentor``: the tiny FC-CLIP with a content-dependent transfer (32-d, 4 heads), the
    ConvNeXt stem and stages trainable and, with ``teacher``, a frozen tiny CLIP for representation
    compensation."""
    cfg = tiny_fcclip_cfg(vocabulary, train_vocabulary, thing_classes)
    cfg['type'] = 'MAFTPlusSegmentor'
    cfg['backbone']['trainable'] = ('visual.trunk.stem', 'visual.trunk.stages')
    cfg['cdt'] = dict(type='ContentDependentTransfer', embed_dim=32, num_heads=4)
    if teacher:
        cfg['teacher'] = dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('convnext'))
    cfg.update(copy.deepcopy(overrides))
    return cfg
