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
        pixel_decoder=dict(type='FCCLIPPixelDecoder',
                           in_channels=manifest['timm_trunk'].get('dims', (128, 256, 512, 1024)),
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


def panoptic_margin(log_probs, mask_probs, expected_ids, object_mask_threshold, tol):
    """Per-pixel distance of an expected Mask2Former panoptic map from a flip, for
    :func:`ovseg.testing.assert_equal_away_from_ties`.

    A pixel takes the segment of the kept query with the largest score x mask probability when that
    query's probability is >= 0.5, else none (0). It is a near tie when the queries within ``tol`` of the
    largest product (each either surely inside its mask, surely outside, or within ``tol`` of 0.5) can give
    it different ids; its margin is then the smaller of the top-2 gap and the winner's distance from 0.5,
    and infinite otherwise. Each query's segment id is read from ``expected_ids`` where it wins.

    Args:
        log_probs (Tensor): (Q, K + 1) expected class log-probabilities (void last).
        mask_probs (Tensor): (Q, H, W) expected mask probabilities at the output size.
        expected_ids (np.ndarray): (H, W) expected panoptic ids.
        object_mask_threshold (float): the score threshold of kept queries.
        tol (float): tolerance of score x probability.
    """
    import numpy as np

    from ovseg.testing.tolerance import threshold_margin, top2_margin
    probs = torch.softmax(torch.as_tensor(log_probs).float(), -1)
    scores, labels = probs.max(-1)
    keep = (labels != probs.shape[-1] - 1) & (scores > object_mask_threshold)
    if not bool(keep.any()):
        return np.full(expected_ids.shape, np.inf)
    masks = torch.as_tensor(mask_probs)[keep].float().numpy()
    weighted = scores[keep].numpy()[:, None, None] * masks
    winner = weighted.argmax(0)
    own = np.take_along_axis(masks, winner[None], 0)[0]
    seg = np.zeros(len(masks), dtype=np.int64)
    for k in range(len(masks)):
        ids = expected_ids[(winner == k) & (own >= 0.5)]
        seg[k] = np.bincount(ids).argmax() if ids.size else 0
    contender = weighted >= weighted.max(0) - tol
    outside = masks < 0.5 - tol
    inside = masks >= 0.5 + tol
    big = np.iinfo(np.int64).max
    low = np.where(contender, np.where(inside, seg[:, None, None], 0), big).min(0)
    high = np.where(contender, np.where(outside, 0, seg[:, None, None]), -1).max(0)
    margin = top2_margin(weighted, axis=0) if len(masks) > 1 else np.full(winner.shape, np.inf)
    return np.where(low != high, np.minimum(margin, threshold_margin(own, 0.5)), np.inf)
