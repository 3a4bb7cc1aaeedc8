"""FC-CLIP parity with the original code (fixtures in $OVSEG_PARITY_DIR/fcclip).

The fixture weights carry the ORIGINAL detectron2 names; they are loaded through the checkpoint converter
(``tools/model_converters/fcclip_to_ovseg.py``). Every case of the manifest is checked.

Tolerances (``ovseg.testing.tolerance``), from the manifest's sizes: the ConvNeXt trunk is its blocks plus
the stem and downsampling stages (width: the MLP, 4 x the largest dim); the pixel decoder adds its input
projections, deformable layers (attention + FFN each) and FPN level; the transformer decoder three stages
per layer and the mask/class heads; each stage set relative to the array's largest value. Mask pooling
is a mean over the res5 grid; the pooled embedding adds the trunk head and MLP; logits are scaled cosines
(a linear map of their features); softmax moves a probability by at most half of the logits' change;
log-softmax and the geometric ensemble by at most twice it; the void-weighted probabilities and their log
add the void probability's error.

Decisions: a query whose ``mask_for_pooling`` has a pixel within tolerance of 0 may pool other pixels in
another run, so its out-of-vocabulary rows are left out of the later comparisons (counted, at most 2).
Semantic, panoptic and instance results are computed by replaying post-processing on the fixture's own
``final_mask_cls_logprobs`` and ``pred_masks``: only post-processing's own roundings remain, the panoptic
map is exact outside ``panoptic_fragile`` (pixels the reference itself flips under 1e-4 input noise),
segments exactly equal, instances compared as a set (top-k near ties at the selection boundary allowed),
their masks exact away from logits within tolerance of 0. Empty results (no instances, no segments) pass.
Hungarian matches are compared exactly when the optimal assignment beats every other by more than the
cost tolerance; the loss terms of a match that is a near tie are not compared.
"""
import importlib.util
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ovseg.models.fcclip import seen_class_mask
from ovseg.registry import MODELS
from ovseg.testing import (assert_close, assert_equal_away_from_ties, load_detweights, parity_dir,
                           softmax_error_model, threshold_margin, tolerance_for)

FOLDER = 'fcclip'
ROOT = parity_dir(FOLDER)
CONVERTER = Path(__file__).resolve().parents[2] / 'tools' / 'model_converters' / 'fcclip_to_ovseg.py'
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _converter():
    spec = importlib.util.spec_from_file_location('fcclip_to_ovseg', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _case_names():
    return [c['name'] for c in _manifest()['cases']] if ROOT is not None else []


def _vocab(case):
    """FC-CLIP's synonym rule: ', ' -> ',', split on ','."""
    return [v['name'].replace(', ', ',').split(',') for v in case['test_vocabulary']]


def _model_cfg(man):
    """An ovseg FC-CLIP config equivalent to the fixture's detectron2 config."""
    d2_all = yaml.safe_load(man['detectron2_config_yaml'])
    d2, d2_test = d2_all['MODEL'], d2_all['TEST']
    mf, head, fc = d2['MASK_FORMER'], d2['SEM_SEG_HEAD'], d2['FC_CLIP']
    clip = json.loads(json.dumps(man['open_clip_model_config']))
    clip.pop('name')
    clip['vision_cfg']['timm_model_name'] = 'convnext_atto'  # placeholder trunk, replaced by _swap_trunk
    return dict(
        type='FCCLIPSegmentor',
        backbone=dict(type='OpenCLIPBackbone', arch=clip),
        pixel_decoder=dict(type='FCCLIPPixelDecoder', in_channels=man['timm_trunk']['dims'],
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
        text_classifier=dict(type='OVTextClassifier', templates=man['templates'], cache_dir=None),
        criterion=dict(type='MaskSetCriterion', class_weight=mf['CLASS_WEIGHT'],
                       mask_weight=mf['MASK_WEIGHT'], dice_weight=mf['DICE_WEIGHT'],
                       no_object_weight=mf['NO_OBJECT_WEIGHT'],
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
        size_divisor=mf['SIZE_DIVISIBILITY'], vocabulary=['x'], train_vocabulary=man['train_vocabulary'])


def _swap_trunk(clip, man):
    """Give the CLIP the fixture's timm ConvNeXt trunk (depths/dims from the manifest) and MLP head."""
    from timm.layers import Mlp
    from timm.models.convnext import ConvNeXt
    spec, embed = man['timm_trunk'], man['open_clip_model_config']['embed_dim']
    clip.visual.trunk = ConvNeXt(depths=spec['depths'], dims=spec['dims'], num_classes=0)
    clip.visual.head = torch.nn.Sequential(OrderedDict(
        mlp=Mlp(spec['dims'][-1], 2 * embed, embed, bias=(True, False))))


@pytest.fixture(scope='module')
def model():
    man = _manifest()
    net = MODELS.build(_model_cfg(man))
    _swap_trunk(net.backbone.clip, man)
    shapes = {k: v for k, v in man['state_dict'].items()}
    weights = load_detweights(ROOT.parent).det_state_dict(shapes, seed=man['weight_seed'])
    original = {k: torch.from_numpy(v) for k, v in weights.items()}
    state, unmatched = _converter().convert_fcclip_state_dict(original)
    assert not unmatched, f'converter left keys unmatched: {unmatched}'
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return net.eval()


def _load(name):
    case = next(c for c in _manifest()['cases'] if c['name'] == name)
    return case, np.load(ROOT / case['file'])


def error_models(man):
    """Float32 error models of the fixture's FC-CLIP stages (module docstring)."""
    trunk, yaml_cfg = man['timm_trunk'], yaml.safe_load(man['detectron2_config_yaml'])['MODEL']
    width = 4 * max(trunk['dims'])
    backbone = dict(depth=sum(trunk['depths']) + len(trunk['depths']), width=width)
    pixdec = dict(backbone, depth=backbone['depth'] + 2 * yaml_cfg['SEM_SEG_HEAD']['TRANSFORMER_ENC_LAYERS'] + 3)
    decoder = dict(pixdec, depth=pixdec['depth'] + 3 * (yaml_cfg['MASK_FORMER']['DEC_LAYERS'] - 1) + 3)
    text = man['open_clip_model_config']['text_cfg']
    text = dict(depth=text['layers'] + 1, width=4 * text['width'])
    return dict(backbone=backbone, pixdec=pixdec, decoder=decoder, text=text, pooled=dict(backbone, depth=backbone['depth'] + 1),
                embed=dict(backbone, depth=backbone['depth'] + 4), ov_logits=dict(backbone, depth=backbone['depth'] + 5))


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_text(model, name):
    case, fx = _load(name)
    tc = model.text_classifier
    prompts = [t.format(s) for cls in _vocab(case) for s in cls for t in tc.templates]
    assert prompts == case['test_class_names_templated']
    tokens = tc.tokenize(model.backbone, prompts)
    np.testing.assert_array_equal(tokens.numpy(), fx['text_tokens'])
    text = error_models(_manifest())['text']
    assert_close(model.backbone.encode_tokens(tokens), fx['text_features_raw'], **text, name='text_features_raw')
    model.set_vocabulary(_vocab(case))
    normalised = dict(text, depth=text['depth'] + 2)  # normalise, mean over templates, normalise
    assert_close(model.class_embeddings().embeddings, fx['text_classifier'], **normalised, name='text_classifier')
    assert_close(model.class_embeddings(model.train_vocabulary).embeddings[:-1], fx['train_text_classifier'],
                 **normalised, name='train_text_classifier')


_RUNS = {}


def _run(model, name):
    """Inference of one case (unpadded input: the model pads), computed once."""
    if name not in _RUNS:
        case, fx = _load(name)
        model.set_vocabulary(_vocab(case), [i for i, v in enumerate(case['test_vocabulary']) if v['isthing']])
        h, w = case['input_hw']
        x = torch.from_numpy(fx['backbone_input_normalized_padded'])[..., :h, :w]
        with torch.no_grad():
            out = model.inference(x)
        _RUNS[name] = (case, fx, out)
    return _RUNS[name]


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_preprocessing(model, name):
    case, fx = _load(name)
    d2 = yaml.safe_load(_manifest()['detectron2_config_yaml'])['MODEL']
    pre = MODELS.build(dict(type='SegDataPreProcessor', mean=d2['PIXEL_MEAN'], std=d2['PIXEL_STD']))
    x = pre(dict(inputs=[torch.from_numpy(fx['input_image_chw'])]), training=False)['inputs']
    # (x - mean) / std: two roundings of values up to ~2.6 (the padding is exact zeros)
    assert_close(model._pad(x), fx['backbone_input_normalized_padded'], depth=2, name='normalised input')


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_backbone_and_pixel_decoder(model, name):
    case, fx, out = _run(model, name)
    models = error_models(_manifest())
    for key in ('res2', 'res3', 'res4', 'res5', 'clip_vis_dense'):
        assert_close(out['features'].tokens[key], fx[f'backbone_{key}'], **models['backbone'], name=key)
    pix = out['pixel_decoder']
    assert_close(pix.mask_features, fx['pixdec_mask_features'], **models['pixdec'], name='mask_features')
    for i, level in enumerate(pix.multi_scale_features):
        assert_close(level, fx[f'pixdec_multi_scale_{i}'], **models['pixdec'], name=f'multi_scale_{i}')
    assert_close(pix.multi_scale_features[0], fx['pixdec_transformer_encoder_features'], **models['pixdec'],
                 name='transformer_encoder_features')


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_decoder_and_ensemble(model, name):
    case, fx, out = _run(model, name)
    models = error_models(_manifest())
    seen_ref = fx['category_overlapping_mask']
    np.testing.assert_array_equal(np.asarray(case['category_overlapping_mask']), seen_ref)
    seen = seen_class_mask(_vocab(case), model.train_vocabulary)
    np.testing.assert_array_equal(seen.long().numpy(), fx['category_overlapping_mask'])
    decoder = models['decoder']
    assert_close(out['pred_logits'], fx['pred_logits'], **decoder, name='pred_logits')
    assert_close(out['pred_masks'], fx['pred_masks'], **decoder, name='pred_masks')
    num_aux = len(out['aux_outputs'])
    assert num_aux == sum(f'aux{i}_pred_logits' in fx for i in range(num_aux + 1))
    for i, aux in enumerate(out['aux_outputs']):
        assert_close(aux['pred_logits'], fx[f'aux{i}_pred_logits'], **decoder, name=f'aux{i}_pred_logits')
        assert_close(aux['pred_masks'], fx[f'aux{i}_pred_masks'], **decoder, name=f'aux{i}_pred_masks')
    _check_out_vocab_and_ensemble(out, fx, models)


def _check_out_vocab_and_ensemble(out, fx, models):
    ov = out['out_vocab']
    decoder = dict(models['decoder'], depth=models['decoder']['depth'] + 1)  # + the bilinear resize
    assert_close(ov.mask_for_pooling, fx['mask_for_pooling'], **decoder, name='mask_for_pooling')
    # Which res5 pixels a query pools is a decision (logit > 0): queries with a near tie are left out.
    pool_tol = tolerance_for(fx['mask_for_pooling'], **decoder)
    near = (threshold_margin(fx['mask_for_pooling'], 0) <= pool_tol).reshape(*fx['mask_for_pooling'].shape[:2], -1)
    rows = ~near.any(-1)  # (1, Q)
    assert (~rows).sum() <= 2, f'{(~rows).sum()} queries pool a pixel within {pool_tol:.2g} of the threshold'
    rows3 = rows[..., None]
    assert_close(ov.pooled_raw, fx['clip_mask_pooled_raw'], **models['pooled'], where=rows3, name='pooled_raw')
    assert_close(ov.pooled_embed, fx['pooled_clip_feature'], **models['embed'], where=rows3, name='pooled_embed')
    assert_close(ov.logits[..., :-1], fx['out_vocab_logits'], **models['ov_logits'], where=rows3,
                 name='out_vocab_logits')
    out_tol = tolerance_for(fx['out_vocab_logits'], **models['ov_logits'])
    in_tol = tolerance_for(fx['pred_logits'], **models['decoder'])
    assert_close(out['out_probs'], fx['out_vocab_probs'], **softmax_error_model(models['ov_logits'], fx['out_vocab_logits']),
                 where=rows3, name='out_vocab_probs')
    for key, ref in (('in_probs', 'in_vocab_probs'), ('void_prob', 'is_void_prob')):
        assert_close(out[key], fx[ref], **softmax_error_model(models['decoder'], fx['pred_logits']), name=key)
    # log-softmax moves by at most twice its logits' change; the ensemble is a convex mix of two of them
    ens_tol = 2 * max(in_tol, out_tol)
    assert_close(out['ensemble_log_probs'], fx['ensemble_log_probs'], atol=ens_tol, scale=0, where=rows3,
                 name='ensemble_log_probs')
    void_tol = tolerance_for(fx['is_void_prob'], **softmax_error_model(models['decoder'], fx['pred_logits']))
    assert_close(out['probs'], fx['ensembled_probs_with_void'], atol=ens_tol / 2 + void_tol, scale=0,
                 where=rows3, name='ensembled_probs_with_void')
    log_tol = ens_tol + void_tol / (1 - float(fx['is_void_prob'].max()))
    assert_close(out['log_probs'], fx['final_mask_cls_logprobs'], atol=log_tol, scale=0, where=rows3,
                 name='final_mask_cls_logprobs')


def _replayed(model, name):
    """Post-processing run on the fixture's own class log-probabilities and mask logits."""
    from mmseg.structures import SegDataSample
    case, fx = _load(name)
    model.set_vocabulary(_vocab(case), [i for i, v in enumerate(case['test_vocabulary']) if v['isthing']])
    h, w = case['input_hw']
    meta = dict(img_shape=(h, w), ori_shape=tuple(case['output_hw']))
    masks = torch.from_numpy(fx['pred_masks'])[0]
    with torch.no_grad():
        result = model.postprocess(torch.from_numpy(fx['final_mask_cls_logprobs'])[0], masks,
                                   tuple(fx['backbone_input_normalized_padded'].shape[-2:]), meta,
                                   SegDataSample(metainfo=meta))
        logits = model._resize_masks(masks, tuple(fx['backbone_input_normalized_padded'].shape[-2:]), (h, w),
                                     tuple(case['output_hw']))
    return case, fx, result, logits


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_semantic_panoptic_instance(model, name):
    case, fx, result, logits = _replayed(model, name)
    # post-processing alone: two bilinear resizes, a sigmoid and a sum over the queries
    post = dict(depth=4, width=4 * fx['pred_masks'].shape[1])
    assert_close(result.seg_logits.data, fx['sem_seg'], **post, name='sem_seg')
    pan = result.pred_panoptic_seg
    assert pan.segments_info == case['panoptic_segments_info']
    fragile = np.where(fx['panoptic_fragile'] > 0, 0.0, np.inf)
    assert_equal_away_from_ties(pan.data[0], fx['panoptic_seg'], fragile, 0.0, max_near_fraction=1.0,
                                name='panoptic_seg')
    _check_instances(result.pred_instances, fx, logits, post)


def _check_instances(inst, fx, logits, post):
    """Instances as a set keyed by (label, score); masks exact away from logits near 0."""
    ref_scores, ref_labels = fx['instances_scores'], fx['instances_pred_classes']
    tol = tolerance_for(ref_scores, **post) if ref_scores.size else 0.0
    got = sorted(zip(inst.labels.tolist(), inst.scores.tolist(), range(len(inst.labels))))
    ref = sorted(zip(ref_labels.tolist(), ref_scores.tolist(), range(len(ref_labels))))
    assert len(got) == len(ref), f'{len(got)} instances, expected {len(ref)}'
    for (label, score, i), (ref_label, ref_score, j) in zip(got, ref):
        assert label == ref_label and abs(score - ref_score) <= tol, (label, score, ref_label, ref_score)
        mask_logits = _instance_logits(logits, inst.masks[i], fx['instances_pred_masks'][j])
        assert_equal_away_from_ties(inst.masks[i], fx['instances_pred_masks'][j].astype(bool),
                                    threshold_margin(mask_logits, 0), tolerance_for(fx['pred_masks'], **post),
                                    name=f'instance {i} mask')


def _instance_logits(logits, mask, ref_mask):
    """The resized logits of the query whose binary mask is this instance's (the replay's own logits)."""
    binary = logits > 0
    match = [q for q in range(len(binary)) if torch.equal(binary[q], mask)]
    assert match, 'an instance mask is no query\'s mask'
    return logits[match[0]]


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_tolerance_catches_defects(model, name):
    """alpha and beta swapped (seen classes weighted as unseen) moves the ensemble far outside its
    tolerance, and so does a post-processing without the crop to the input size (when there is padding)."""
    from ovseg.models.fcclip.ensemble import geometric_ensemble
    case, fx, out = _run(model, name)
    models = error_models(_manifest())
    swapped = geometric_ensemble(out['pred_logits'], out['out_vocab'].logits, model.seen_mask, 0.8, 0.4)
    tol = 2 * max(tolerance_for(fx['pred_logits'], **models['decoder']),
                  tolerance_for(fx['out_vocab_logits'], **models['ov_logits']))
    assert np.abs(swapped['ensemble_log_probs'].numpy() - fx['ensemble_log_probs']).max() > 10 * tol
    padded = tuple(fx['backbone_input_normalized_padded'].shape[-2:])
    if padded != tuple(case['input_hw']):
        masks = torch.from_numpy(fx['pred_masks'])[0]
        no_crop = model._resize_masks(masks, padded, padded, tuple(case['output_hw']))
        _, _, _, logits = _replayed(model, name)
        assert (no_crop - logits).abs().max() > 10 * tolerance_for(fx['pred_masks'], depth=4, width=64)


class _StoredRand:
    """Replays the fixture's ``torch.rand`` outputs in call order, checking each requested shape."""

    def __init__(self, fx, calls):
        self.arrays = [fx[f'loss_rand_{i:02d}'] for i in range(len(calls))]
        self.calls = [tuple(c) for c in calls]
        self.i = 0

    def __call__(self, shape, device):
        assert tuple(shape) == self.calls[self.i], (shape, self.calls[self.i])
        out = torch.from_numpy(self.arrays[self.i]).to(device)
        self.i += 1
        return out


class _RecordingMatcher:
    """Records each call's matches and its cost matrix (for the near-tie check)."""

    def __init__(self, matcher):
        self.matcher, self.calls, self.costs = matcher, [], []

    def __call__(self, outputs, targets, rand):
        cost_matrix = self.matcher.cost_matrix

        def recording(*args, **kwargs):
            cost = cost_matrix(*args, **kwargs)
            self.costs.append(cost.detach().reshape(cost.shape[0], -1).numpy().astype(np.float64))
            return cost

        self.matcher.cost_matrix = recording
        try:
            indices = self.matcher(outputs, targets, rand=rand)
        finally:
            del self.matcher.cost_matrix
        self.calls.append(indices)
        return indices


def assignment_gap(cost, rows, cols):
    """How much worse the best assignment other than (rows, cols) is (inf when there is none)."""
    from scipy.optimize import linear_sum_assignment
    best = cost[rows, cols].sum()
    gap = np.inf
    for r, c in zip(rows, cols):
        other = cost.copy()
        other[r, c] = 1e30
        r2, c2 = linear_sum_assignment(other)
        if other[r2, c2].max() < 1e30:
            gap = min(gap, other[r2, c2].sum() - best)
    return gap


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_training_loss(model, name):
    from mmengine.structures import InstanceData
    from mmseg.structures import SegDataSample
    case, fx = _load(name)
    sample = SegDataSample(metainfo=dict(img_shape=tuple(case['input_hw'])))
    sample.gt_instances = InstanceData(labels=torch.from_numpy(fx['gt_labels']),
                                       masks=torch.from_numpy(fx['gt_masks']).bool())
    rand = _StoredRand(fx, case['loss_rand_calls'])
    matcher = model.criterion.matcher
    model.criterion.matcher = _RecordingMatcher(matcher)
    model.train()
    try:
        losses = model.loss(torch.from_numpy(fx['backbone_input_normalized_padded']), [sample], rand=rand)
        calls = model.criterion.matcher.calls
        costs = model.criterion.matcher.costs
    finally:
        model.criterion.matcher = matcher
        model.eval()
    assert rand.i == len(rand.arrays)
    loss_model = dict(error_models(_manifest())['decoder'])
    loss_model['depth'] += 3  # point sampling, the per-point losses, their means
    suffixes = [''] + [f'_{i}' for i in range(len(calls) - 1)]  # final output first, then aux 0, 1, ...
    tied = set()
    for i, indices in enumerate(calls):
        src, tgt = indices[0][0].numpy(), indices[0][1].numpy()
        cost_tol = tolerance_for(costs[i], **loss_model)
        if assignment_gap(costs[i], src, tgt) <= 2 * cost_tol * len(src):
            tied.add(suffixes[i])  # another assignment is as good within float error
            continue
        np.testing.assert_array_equal(src, fx[f'match_{i}_src'])
        np.testing.assert_array_equal(tgt, fx[f'match_{i}_tgt'])
    assert len(tied) <= 1, f'{len(tied)} outputs have near-tie matches'
    assert sorted(losses) == sorted(case['loss_dict'])
    for key, value in case['loss_dict'].items():
        if any(key.endswith(s) and (s or key.count('_') == 1) for s in tied):
            continue
        assert_close(losses[key], value, **loss_model, name=key)
