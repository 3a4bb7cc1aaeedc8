"""ovseg model configs equivalent to the FC-CLIP-family parity fixtures (FC-CLIP, FrozenSeg, MAFT+).

The fixtures store the original detectron2 config dump, the open_clip config and the tiny timm ConvNeXt
trunk they were made with; these helpers turn them into ovseg configs and give the CLIP that trunk.
"""
import json
from collections import OrderedDict

import torch
import yaml


def detectron2_config(manifest, variant=None):
    """The fixture's detectron2 config as a dict (``variant`` picks one of several dumps, e.g. 'sem')."""
    dump = manifest['detectron2_config_yaml']
    return yaml.safe_load(dump[variant] if isinstance(dump, dict) else dump)


def fcclip_family_cfg(manifest, segmentor='FCCLIPSegmentor', variant=None, **extra):
    """Segmentor config equivalent to the fixture's detectron2 config (weights drawn separately).

    Args:
        manifest (dict): the fixture's ``manifest.json``.
        segmentor (str): registered segmentor type (FC-CLIP family).
        variant (str, optional): config dump to read when the manifest holds several.
        **extra: top-level keys added to the config (method-specific parts).
    """
    d2_all = detectron2_config(manifest, variant)
    d2, d2_test = d2_all['MODEL'], d2_all['TEST']
    mf, head = d2['MASK_FORMER'], d2['SEM_SEG_HEAD']
    fc = d2.get('FC_CLIP') or d2['FROZEN_SEG']
    clip = json.loads(json.dumps(manifest['open_clip_model_config']))
    clip.pop('name')
    clip['vision_cfg']['timm_model_name'] = 'convnext_atto'  # placeholder trunk, replaced by swap_trunk
    cfg = dict(
        type=segmentor,
        backbone=dict(type='OpenCLIPBackbone', arch=clip),
        pixel_decoder=dict(type='FCCLIPPixelDecoder', in_channels=manifest['timm_trunk'].get('dims', (128, 256, 512, 1024)),
                           conv_dim=head['CONVS_DIM'], mask_dim=head['MASK_DIM'],
                           num_layers=head['TRANSFORMER_ENC_LAYERS'], num_heads=mf['NHEADS'],
                           num_points=head['DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS'], ffn_dim=1024,
                           dropout=mf['DROPOUT']),
        transformer_decoder=dict(type='FCCLIPTransformerDecoder', in_channels=head['CONVS_DIM'],
                                 hidden_dim=mf['HIDDEN_DIM'], num_queries=mf['NUM_OBJECT_QUERIES'],
                                 num_heads=mf['NHEADS'], ffn_dim=mf['DIM_FEEDFORWARD'],
                                 num_layers=mf['DEC_LAYERS'] - 1, pre_norm=mf['PRE_NORM'],
                                 mask_dim=head['MASK_DIM'], enforce_input_proj=mf['ENFORCE_INPUT_PROJ'],
                                 class_head=dict(type='FCCLIPInVocabClassifier', text_dim=fc['EMBED_DIM'])),
        text_classifier=dict(type='OVTextClassifier', templates=manifest['templates'], cache_dir=None),
        criterion=dict(type='MaskSetCriterion', class_weight=mf['CLASS_WEIGHT'], mask_weight=mf['MASK_WEIGHT'],
                       dice_weight=mf['DICE_WEIGHT'], no_object_weight=mf['NO_OBJECT_WEIGHT'],
                       num_points=mf['TRAIN_NUM_POINTS'], oversample_ratio=mf['OVERSAMPLE_RATIO'],
                       importance_sample_ratio=mf['IMPORTANCE_SAMPLE_RATIO'],
                       deep_supervision=mf['DEEP_SUPERVISION']),
        ensemble=dict(alpha=fc['GEOMETRIC_ENSEMBLE_ALPHA'], beta=fc['GEOMETRIC_ENSEMBLE_BETA'],
                      on_valid_mask=fc['ENSEMBLE_ON_VALID_MASK']),
        test_cfg=dict(semantic_on=mf['TEST']['SEMANTIC_ON'], panoptic_on=mf['TEST']['PANOPTIC_ON'],
                      instance_on=mf['TEST']['INSTANCE_ON'],
                      object_mask_threshold=mf['TEST']['OBJECT_MASK_THRESHOLD'],
                      overlap_threshold=mf['TEST']['OVERLAP_THRESHOLD'],
                      max_per_image=d2_test['DETECTIONS_PER_IMAGE']),
        size_divisor=mf['SIZE_DIVISIBILITY'], vocabulary=['x'], train_vocabulary=manifest['train_vocabulary'])
    cfg.update(extra)
    return cfg


def swap_trunk(clip, manifest):
    """Give an open_clip CLIP the fixture's timm ConvNeXt trunk (depths/dims) and MLP head."""
    from timm.layers import Mlp
    from timm.models.convnext import ConvNeXt
    spec, embed = manifest['timm_trunk'], manifest['open_clip_model_config']['embed_dim']
    depths, dims = spec.get('depths', (1, 1, 2, 1)), spec.get('dims', (128, 256, 512, 1024))
    clip.visual.trunk = ConvNeXt(depths=depths, dims=dims, num_classes=0)
    clip.visual.head = torch.nn.Sequential(OrderedDict(mlp=Mlp(dims[-1], 2 * embed, embed, bias=(True, False))))
