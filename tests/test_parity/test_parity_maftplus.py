"""MAFT+ parity with the original code (fixtures in $OVSEG_PARITY_DIR/maftplus).

The fixture weights carry the ORIGINAL detectron2 names and are loaded through
``tools/model_converters/maftplus_to_ovseg.py``. Each case runs through the two released evaluation
models: 'sem' (``configs/semantic/eval.yaml``: semantic residual of the content-dependent transfer,
semantic map only) and 'pan' (``configs/panoptic/eval.yaml``: panoptic residual, panoptic + semantic,
thresholds 0.2 / 0.7). ``dense_embedding='released'`` (the original's channel-mixing reshape, which the
fixture stores as ``cdt_img_feat``).

Tolerances come from :mod:`ovseg.testing.tolerance` (``depth * sqrt(width) * eps * scale``): CLIP
ConvNeXt 4 stages (bit-identical to the reference), pixel decoder 2 deformable layers of FFN 1024 + FPN,
decoder 3 layers; the CDT is one attention over the h x w CLIP grid with 64-d rows.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.fcclip.postprocess import resize_to_output
from ovseg.registry import MODELS
from ovseg.testing import assert_close, assert_equal_away_from_ties, load_detweights, load_tool, parity_dir, \
    tolerance_for
from ovseg.testing.fcclip_family import detectron2_config, fcclip_family_cfg, panoptic_margin, swap_trunk

FOLDER = 'maftplus'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
VARIANTS = {'sem': '', 'pan': 'pan_'}
DEPTH_HEAD = 11  # backbone stages (4) + pixel decoder (2 layers + FPN) + decoder layers (3) + heads
WIDTH_HEAD = 1024


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _params():
    if ROOT is None:
        return []
    return [(variant, c['name']) for variant in VARIANTS for c in _manifest()['cases']]


def _vocab(case):
    return [v['name'].replace(', ', ',').split(',') for v in case['test_vocabulary']]


_MODELS = {}


def _model(variant):
    if variant not in _MODELS:
        man = _manifest()
        d2 = detectron2_config(man, variant)
        embed, heads = d2['MODEL']['cdt_params']
        panoptic = d2['MODEL']['MASK_FORMER']['TEST']['PANOPTIC_ON']
        cfg = fcclip_family_cfg(man, 'MAFTPlusSegmentor', variant=variant, dense_embedding='released',
                                cdt=dict(type='ContentDependentTransfer', embed_dim=embed, num_heads=heads,
                                         residual='panoptic' if panoptic else 'semantic'))
        cfg.pop('ensemble')  # MAFT+: alpha = beta = 1 (out-of-vocabulary probabilities only)
        net = MODELS.build(cfg)
        swap_trunk(net.backbone.clip, man)
        weights = load_detweights(ROOT.parent).det_state_dict(man['state_dict'], seed=man['weight_seed'])
        conv = load_tool('model_converters/maftplus_to_ovseg.py')
        state, unmatched = conv.convert_maftplus_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        assert not unmatched and not conv.FCCLIP.missing_keys(state, conv.REQUIRED)
        missing, unexpected = net.load_state_dict(state, strict=False)
        assert not missing and not unexpected, (missing, unexpected)
        _MODELS[variant] = net.eval()
    return _MODELS[variant]


_RUNS = {}


def _run(variant, name):
    if (variant, name) not in _RUNS:
        from mmseg.structures import SegDataSample
        model = _model(variant)
        case = next(c for c in _manifest()['cases'] if c['name'] == name)
        fx = np.load(ROOT / case['file'])
        model.set_vocabulary(_vocab(case), [i for i, v in enumerate(case['test_vocabulary']) if v['isthing']])
        h, w = case['input_hw']
        x = torch.from_numpy(fx['backbone_input_normalized_padded'])[..., :h, :w]
        meta = dict(img_shape=(h, w), ori_shape=tuple(case['output_hw']))
        with torch.no_grad():
            out = model.inference(x, [meta])
            result = model.postprocess(out['log_probs'][0], out['pred_masks'][0], out['padded_shape'], meta,
                                       SegDataSample(metainfo=meta))
        _RUNS[(variant, name)] = (model, case, fx, out, result)
    return _RUNS[(variant, name)]


def _tol_logits(fx, key):
    """Out-of-vocabulary logits are 100 x cosines of the CLIP head's output (depth 3: pooling and the
    2-layer head, width 1024) against the CDT rows (one more attention stage over the CLIP grid); the
    in-vocabulary logits (decoder logit scale ~14.3, full head depth) only set the void probability."""
    return tolerance_for(fx[key], depth=4, width=1024, scale=100.0,
                         atol=tolerance_for(fx[key], depth=DEPTH_HEAD, width=WIDTH_HEAD, scale=1 / 0.07))


@pytest.mark.parametrize('variant,name', _params())
def test_parity_maftplus_text_backbone_decoder(variant, name):
    """Text rows (depth 3, width 256, unit norm), CLIP stages (depth 4, width 1024), pixel decoder
    (depth 7), decoder logits (decoder logit scale) and masks (depth 11); identical for both variants."""
    model, case, fx, out, _ = _run(variant, name)
    assert_close(model.class_embeddings().embeddings, fx['text_classifier'], depth=3, width=256, scale=1.0,
                 name='text_classifier')
    for key in ('res2', 'res3', 'res4', 'res5', 'clip_vis_dense'):
        assert_close(out['features'].tokens[key], fx[f'backbone_{key}'], depth=4, width=1024, name=key)
    pix = out['pixel_decoder']
    assert_close(pix.mask_features, fx['pixdec_mask_features'], depth=7, width=1024, name='mask_features')
    for i, level in enumerate(pix.multi_scale_features):
        assert_close(level, fx[f'pixdec_multi_scale_{i}'], depth=7, width=1024, name=f'multi_scale_{i}')
    heads = out['aux_outputs'] + [dict(pred_logits=out['pred_logits'], pred_masks=out['pred_masks'])]
    for i, head in enumerate(heads):
        key = f'aux{i}_' if i < len(heads) - 1 else ''
        assert_close(head['pred_logits'], fx[f'{key}pred_logits'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                     scale=1 / 0.07, name=f'{key}pred_logits')
        assert_close(head['pred_masks'], fx[f'{key}pred_masks'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                     name=f'{key}pred_masks')


@pytest.mark.parametrize('variant,name', _params())
def test_parity_maftplus_content_dependent_transfer(variant, name):
    """Dense CLIP embedding (CLIP head on the stage-4 map: depth 6, width 1024), the CDT's positional
    encoding (exact formula, scale 1), attention (depth 7, width h*w*64 <= 1024), its linear map and the
    transferred rows (depth 8), then the out-of-vocabulary logits (``_tol_logits``)."""
    model, case, fx, out, _ = _run(variant, name)
    prefix = VARIANTS[variant]
    cdt = out['cdt']
    assert_close(out['cdt_image'], fx['cdt_img_feat'], depth=6, width=1024, name='cdt_img_feat')
    b, e, h, w = out['cdt_image'].shape
    assert_close(cdt.pos.transpose(1, 2).reshape(b, e, h, w), fx[f'{prefix}cdt_pos'], scale=1.0, name='cdt_pos')
    assert_close(cdt.attn.transpose(0, 1), fx[f'{prefix}cdt_attn_out'], depth=7, width=1024, name='cdt_attn')
    assert_close(cdt.mlp.transpose(0, 1), fx[f'{prefix}cdt_mlp_out'], depth=8, width=1024, name='cdt_mlp')
    assert_close(cdt.text, fx[f'{prefix}cdt_text_classifier'], depth=8, width=1024, name='cdt_text')
    ov = out['out_vocab']
    assert_close(ov.mask_for_pooling, fx['mask_for_pooling'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                 name='mask_for_pooling')
    assert_close(ov.pooled_raw, fx['clip_mask_pooled_raw'], depth=DEPTH_HEAD, width=1024, name='pooled_raw')
    assert_close(ov.pooled_embed, fx['pooled_clip_feature'], depth=DEPTH_HEAD + 2, width=1024, name='pooled')
    tol = _tol_logits(fx, f'{prefix}final_mask_cls_logprobs')
    assert_close(ov.logits, fx[f'{prefix}out_vocab_logits_with_void'], atol=tol, scale=0.0, name='out_vocab')
    assert_close(out['void_prob'], fx['is_void_prob'], atol=tol, scale=0.0, name='void')
    assert_close(out['probs'], fx[f'{prefix}mask_cls_probs'], atol=tol, scale=0.0, name='mask_cls_probs')
    assert_close(out['log_probs'], fx[f'{prefix}final_mask_cls_logprobs'], atol=tol, scale=0.0, name='final')


def _mass(fx, key):
    """Largest total probability a class gets over the queries (a semantic score is a sum of such terms)."""
    return float(F.softmax(torch.from_numpy(fx[key][0]), -1)[:, :-1].sum(0).max())


@pytest.mark.parametrize('variant,name', _params())
def test_parity_maftplus_semantic_panoptic(variant, name):
    """Semantic map values (sum over queries of probability x sigmoid); for 'pan' the segments exactly and
    the panoptic map away from near ties of score x mask probability (case1 keeps no query: its best score
    is 6e-4 under the 0.2 threshold, farther than the score tolerance)."""
    model, case, fx, out, result = _run(variant, name)
    prefix = VARIANTS[variant]
    tol = _tol_logits(fx, f'{prefix}final_mask_cls_logprobs')
    tol_mask = tolerance_for(fx['pred_masks'], depth=DEPTH_HEAD, width=WIDTH_HEAD)
    assert_close(result.seg_logits.data, fx[f'{prefix}sem_seg'],
                 atol=(tol + 0.25 * tol_mask) * _mass(fx, f'{prefix}final_mask_cls_logprobs'), scale=0.0,
                 name='sem_seg')
    if variant != 'pan':
        assert 'pred_panoptic_seg' not in result
        return
    decisions = case['pan_panoptic_decisions']
    probs = F.softmax(torch.from_numpy(fx['pan_final_mask_cls_logprobs'][0]), -1)
    top_score = float(probs[:, :-1].max())
    # keeping a query is decided against the 0.2 threshold: exact when no score is within tolerance of it
    assert decisions['min_abs_score_minus_threshold'] > tol * top_score
    pan = result.pred_panoptic_seg
    assert pan.segments_info == case['pan_panoptic_segments_info']
    up = F.interpolate(torch.from_numpy(fx['pred_masks']), size=out['padded_shape'], mode='bilinear',
                       align_corners=False)[0]
    masks = resize_to_output(up, tuple(case['input_hw']), tuple(case['output_hw'])).sigmoid()
    tol_pan = tol * top_score + 0.25 * tol_mask
    margin = panoptic_margin(fx['pan_final_mask_cls_logprobs'][0], masks, fx['pan_panoptic_seg'],
                             model.test_cfg['object_mask_threshold'], tol_pan)
    # the share of near ties depends on the case (flat random-weight scores): not bounded; the other pixels
    # are compared exactly and at most 10 pixels may differ at all
    assert_equal_away_from_ties(pan.data[0].numpy(), fx['pan_panoptic_seg'], margin, tol_pan,
                                max_near_fraction=1.0, name='pan_panoptic_seg')
