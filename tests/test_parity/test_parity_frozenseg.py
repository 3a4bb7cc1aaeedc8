"""FrozenSeg parity with the original code (fixtures in $OVSEG_PARITY_DIR/frozenseg).

The fixture weights carry the ORIGINAL detectron2 names and are loaded through
``tools/model_converters/frozenseg_to_ovseg.py``. The model runs with ``behaviour='released'`` (the
fixture reproduces the released defects: SAM-branch deformable attention read with the compiled kernel's
one-level stride, no key positions after the feature injector, the proposal pooling's zero padding).
Every case of the manifest is checked, stage by stage.

Tolerances come from :mod:`ovseg.testing.tolerance` (float32 random-walk bound ``depth * sqrt(width) *
eps * scale``); each test states its depth, width and scale. The networks are: CLIP ConvNeXt (4 stages,
bit-identical to the reference), SAM ViT (2 blocks of width 768 / MLP 3072, one global attention over
64 x 64 = 4096 tokens, 2-conv neck), pixel decoder (2 deformable layers of FFN 1024 + FPN), decoder
(4 layers, FFN 128) with 16 queries.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.fcclip import seen_class_mask
from ovseg.models.fcclip.postprocess import resize_to_output
from ovseg.registry import MODELS
from ovseg.testing import (assert_close, assert_equal_away_from_ties, load_detweights, load_tool, parity_dir,
                           threshold_margin, tolerance_for)
from ovseg.testing.fcclip_family import detectron2_config, fcclip_family_cfg, panoptic_margin, swap_trunk

FOLDER = 'frozenseg'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
DEPTH_HEAD = 12  # backbone stages (4) + pixel decoder (2 layers + FPN) + decoder layers (4) + heads
WIDTH_HEAD = 1024  # longest reduction of the heads: the pixel decoder's FFN


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _case_names():
    return [c['name'] for c in _manifest()['cases']] if ROOT is not None else []


def _vocab(case):
    """The original's synonym rule: ', ' -> ',', split on ','."""
    return [v['name'].replace(', ', ',').split(',') for v in case['test_vocabulary']]


def _model_cfg(man):
    d2 = detectron2_config(man)
    sam = man['model']['sam']['image_encoder']
    fs = d2['MODEL']['MASK_FORMER']
    return fcclip_family_cfg(
        man, 'FrozenSegSegmentor', behaviour='released',
        sam=dict(type='SAMPredictor', arch=d2['MODEL']['SAM_NAME'], depth=sam['depth'],
                 global_attn_indexes=tuple(sam['global_attn_indexes']), window_size=sam['window_size'],
                 prompt_dim=man['model']['sam']['prompt_embed_dim'], image_size=sam['img_size']),
        injector=dict(type='FrozenSegInjector', feature_level=fs['SAM_FEATURE_FUSE_LAYER'],
                      query_level=fs['SAM_QUERY_FUSE_LAYER']),
        proposal_ensemble=dict(alpha=d2['TEST']['SAM_MASK_PRED_ALPHA']))


@pytest.fixture(scope='module')
def model():
    man = _manifest()
    net = MODELS.build(_model_cfg(man))
    swap_trunk(net.backbone.clip, man)
    weights = load_detweights(ROOT.parent).det_state_dict(man['state_dict'], seed=man['weight_seed'])
    conv = load_tool('model_converters/frozenseg_to_ovseg.py')
    state, unmatched = conv.convert_frozenseg_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    assert not unmatched, f'converter left keys unmatched: {unmatched}'
    assert not conv.FCCLIP.missing_keys(state, conv.REQUIRED, conv.FAMILIES)
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return net.eval()


def _load(name):
    case = next(c for c in _manifest()['cases'] if c['name'] == name)
    return case, np.load(ROOT / case['file'])


class _Recorder:
    """Forward hooks keeping the inputs / outputs of a few modules during one run."""

    def __init__(self, model):
        self.data, self.handles = {}, []
        injector = model.injector
        for key, layer in injector.feature_injectors.items():
            self.handles.append(layer.register_forward_hook(self._injector(key), with_kwargs=True))
        for i, ffn in enumerate(model.transformer_decoder.ffn_layers):
            self.handles.append(ffn.register_forward_hook(self._store(f'query_in{i + 1}')))
        self.handles.append(model.sam_branch.encoder_layers[0].register_forward_hook(self._store('sam_layer0')))
        attn = model.sam_branch.encoder_layers[0].self_attn
        fit = attn._fit_levels

        def record_fit(locations, weights, given):
            self.data.setdefault('msda0', (locations, weights))
            return fit(locations, weights, given)
        attn._fit_levels = record_fit
        self._attn = attn

    def _injector(self, key):
        def hook(module, args, kwargs, output):
            self.data[f'injector{key}'] = (args[0], args[1], output)
        return hook

    def _store(self, name):
        def hook(module, args, output):
            self.data[name] = output
        return hook

    def close(self):
        for h in self.handles:
            h.remove()
        del self._attn._fit_levels


_RUNS = {}


def _run(model, name):
    """Run A (semantic + panoptic + instance) of one case, with intermediates; computed once."""
    if name not in _RUNS:
        from mmseg.structures import SegDataSample
        case, fx = _load(name)
        model.set_vocabulary(_vocab(case), [i for i, v in enumerate(case['test_vocabulary']) if v['isthing']])
        h, w = case['input_hw']
        x = torch.from_numpy(fx['backbone_input_normalized_padded'])[..., :h, :w]
        meta = dict(img_shape=(h, w), ori_shape=tuple(case['output_hw']))
        rec = _Recorder(model)
        try:
            with torch.no_grad():
                out = model.inference(x, [meta])
                result = model.postprocess(out['log_probs'][0], out['pred_masks'][0], out['padded_shape'], meta,
                                           SegDataSample(metainfo=meta))
                sam_in = model.sam_inputs(model._pad(x), [(h, w)])
        finally:
            rec.close()
        _RUNS[name] = (case, fx, out, result, rec.data, sam_in)
    return _RUNS[name]


def _seq_first(tokens):
    """(B, N, C) batch-first tokens -> (N, B, C) as the fixture stores them."""
    return tokens.transpose(0, 1)


def _tol_logits(fx, key):
    """Class log-probabilities: in-vocabulary logits (scale = the decoder's logit scale ~14.3, the full
    depth of the heads) plus out-of-vocabulary logits (scale = CLIP's 100, depth 3: pooling and the
    2-layer CLIP head, width 1024 pooled channels)."""
    return tolerance_for(fx[key], depth=DEPTH_HEAD, width=WIDTH_HEAD, scale=1 / 0.07,
                         atol=tolerance_for(fx[key], depth=3, width=1024, scale=100.0))


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_text(model, name):
    """Text embeddings: 2 text layers of width 64 (MLP 256), unit rows: depth 3, width 256, scale 1."""
    case, fx = _load(name)
    model.set_vocabulary(_vocab(case))
    prompts = [t.format(s) for cls in _vocab(case) for s in cls for t in model.text_classifier.templates]
    assert prompts == case.get('test_class_names_templated', prompts)
    tokens = model.text_classifier.tokenize(model.backbone, prompts)
    np.testing.assert_array_equal(tokens.numpy(), fx['text_tokens'])
    assert_close(model.class_embeddings().embeddings, fx['text_classifier'], depth=3, width=256, scale=1.0,
                 name='text_classifier')


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_sam_encoder(model, name):
    """SAM input: CLIP normalisation undone and SAM's applied (two affine steps on 0-255 values: depth 2,
    scale 255 / 57.1 in SAM units) and a bilinear resize (4 terms). SAM neck output: 2 blocks + 2 neck convs
    (depth 4), longest reduction the global attention over 4096 tokens, LayerNorm2d output (scale 1)."""
    case, fx, out, _, _, sam_in = _run(model, name)
    scale = 255.0 / 57.12
    assert_close(sam_in[..., ::8, ::8], fx['sam_input_1024_sub8'], depth=2, width=4, scale=scale, name='sam_in')
    assert_close(sam_in[..., :64, :64], fx['sam_input_1024_crop64'], depth=2, width=4, scale=scale,
                 name='sam_in_crop')
    assert_close(out['features'].tokens['sam_embedding'], fx['sam_neck_embedding'], depth=4, width=4096,
                 scale=1.0, name='sam_neck')


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_pixel_decoder_both_branches(model, name):
    """CLIP branch (backbone 4 stages + 2 deformable layers + FPN: depth 7, width 1024) and SAM branch (SAM
    encoder 4 + fpn conv + 2 deformable layers: depth 7, width 4096), both at the scale of their outputs.
    The SAM branch's first deformable call is checked on its 3-level sampling locations (scale 1, in [0,1]
    up to the offsets) and softmax weights before the compiled-kernel reinterpretation."""
    case, fx, out, _, rec, _ = _run(model, name)
    for key in ('res2', 'res3', 'res4', 'res5', 'clip_vis_dense'):
        assert_close(out['features'].tokens[key], fx[f'backbone_{key}'], depth=4, width=1024, name=key)
    pix = out['pixel_decoder']
    assert_close(pix.mask_features, fx['pixdec_mask_features'], depth=7, width=1024, name='mask_features')
    for i, level in enumerate(pix.multi_scale_features):
        assert_close(level, fx[f'pixdec_multi_scale_{i}'], depth=7, width=1024, name=f'multi_scale_{i}')
    fpn = model.sam_branch.fpn(out['features'].tokens['sam_embedding'])
    assert_close(fpn, fx['pixdec_sam_fpn3'], depth=5, width=4096, name='sam_fpn3')
    locations, weights = rec['msda0']
    assert_close(locations, fx['pixdec_sam_msda0_sampling_locations'], depth=6, width=4096,
                 scale=float(np.abs(fx['pixdec_sam_msda0_sampling_locations']).max()), name='msda0_locations')
    assert_close(weights, fx['pixdec_sam_msda0_attention_weights'], depth=6, width=4096, scale=1.0,
                 name='msda0_weights')
    assert_close(rec['sam_layer0'], fx['pixdec_sam_encoder_layer0'], depth=6, width=4096, name='sam_layer0')
    assert_close(out['sam_feature'], fx['pixdec_sam_feature'], depth=7, width=4096, name='sam_feature')


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_decoder_injectors(model, name):
    """Feature injector tokens and outputs, queries entering each head call, the query injector's pooled SAM
    embedding at every head call, and every prediction (in-vocabulary logits at the decoder's logit scale,
    mask logits at their own): depth 12, width 1024 (module docstring)."""
    case, fx, out, _, rec, _ = _run(model, name)
    dec = model.transformer_decoder
    sam_resized = F.interpolate(out['sam_feature'], size=out['pixel_decoder'].multi_scale_features[0].shape[-2:],
                                mode='bilinear', align_corners=False)
    assert_close(sam_resized, fx['dec_sam_feature_resized'], depth=8, width=4096, name='sam_resized')
    layers = sorted(int(k) for k in model.injector.feature_injectors)
    assert layers == [int(k[len('dec_feature_injector'):-len('_out')]) for k in fx.files
                      if k.startswith('dec_feature_injector') and k.endswith('_out')]
    for layer in layers:
        tgt, sam_tokens, fused = rec[f'injector{layer}']
        prefix = f'dec_feature_injector{layer}'
        assert_close(_seq_first(tgt), fx[f'{prefix}_clip_tokens_in'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                     name=f'{prefix}_clip_tokens_in')
        assert_close(_seq_first(sam_tokens), fx[f'{prefix}_sam_tokens'], depth=8, width=4096,
                     name=f'{prefix}_sam_tokens')
        assert_close(_seq_first(fused), fx[f'{prefix}_out'], depth=DEPTH_HEAD, width=WIDTH_HEAD, name=f'{prefix}_out')
    context = model.injector.bind(out['sam_feature'], out['features'].tokens['sam_embedding'],
                                  dec.level_embed.weight[0], dec.class_head.pool_proj,
                                  out['pixel_decoder'].multi_scale_features[0].shape[-2:])
    heads = out['aux_outputs'] + [dict(pred_logits=out['pred_logits'], pred_masks=out['pred_masks'])]
    assert len(heads) == sum(f'dec_head{i}_query_in' in fx for i in range(len(heads) + 1))
    assert_close(dec.query_feat.weight[:, None], fx['dec_head0_query_in'], name='query_in0')
    for i, head in enumerate(heads):
        if i:
            assert_close(_seq_first(rec[f'query_in{i}']), fx[f'dec_head{i}_query_in'], depth=DEPTH_HEAD,
                         width=WIDTH_HEAD, name=f'query_in{i}')
        with torch.no_grad():
            pooled = context.sam_pool(head['pred_masks'])
        assert_close(_seq_first(pooled), fx[f'dec_head{i}_sam_pool_emb'], depth=DEPTH_HEAD + 1, width=4096,
                     name=f'sam_pool_emb{i}')
        key = f'aux{i}_' if i < len(heads) - 1 else ''
        assert_close(head['pred_logits'], fx[f'{key}pred_logits'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                     scale=1 / 0.07, name=f'{key}pred_logits')
        assert_close(head['pred_masks'], fx[f'{key}pred_masks'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                     name=f'{key}pred_masks')


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_ensemble(model, name):
    """Out-of-vocabulary classification (CLIP mask pooling; logits at CLIP's scale 100) and the geometric
    ensemble: see ``_tol_logits``; probabilities (scale 1) take the same absolute bound."""
    case, fx, out, _, _, _ = _run(model, name)
    seen = seen_class_mask(_vocab(case), model.train_vocabulary)
    np.testing.assert_array_equal(seen.long().numpy(), fx['category_overlapping_mask'])
    ov = out['out_vocab']
    assert_close(ov.mask_for_pooling, fx['mask_for_pooling'], depth=DEPTH_HEAD, width=WIDTH_HEAD,
                 name='mask_for_pooling')
    assert_close(ov.pooled_raw, fx['clip_mask_pooled_raw'], depth=DEPTH_HEAD, width=1024, name='pooled_raw')
    assert_close(ov.pooled_embed, fx['pooled_clip_feature'], depth=DEPTH_HEAD + 2, width=1024, name='pooled')
    tol = _tol_logits(fx, 'final_mask_cls_logprobs')
    assert_close(ov.logits[..., :-1], fx['out_vocab_logits'], atol=tol, depth=1, width=1, scale=0.0,
                 name='out_vocab_logits')
    for key, ref in (('out_probs', 'out_vocab_probs'), ('in_probs', 'in_vocab_probs'),
                     ('ensemble_log_probs', 'ensemble_log_probs'), ('void_prob', 'is_void_prob'),
                     ('probs', 'ensembled_probs_with_void'), ('log_probs', 'final_mask_cls_logprobs')):
        assert_close(out[key], fx[ref], atol=tol, scale=0.0, name=key)


def _mass(fx):
    """Largest total probability a class gets over the queries (expected): a semantic score is a sum of
    probability x sigmoid terms, so its error is at most this times one term's relative error."""
    probs = F.softmax(torch.from_numpy(fx['final_mask_cls_logprobs'][0]), -1)[:, :-1]
    return float(probs.sum(0).max())


def _panoptic_margin(model, fx, case, padded_shape, tol):
    """Near ties of the expected panoptic map (:func:`panoptic_margin`) from the fixture's final log-probs and
    stride-4 masks, resized as the original does."""
    up = F.interpolate(torch.from_numpy(fx['pred_masks']), size=padded_shape, mode='bilinear',
                       align_corners=False)[0]
    masks = resize_to_output(up, tuple(case['input_hw']), tuple(case['output_hw'])).sigmoid()
    return panoptic_margin(fx['final_mask_cls_logprobs'][0], masks, fx['panoptic_seg'],
                           model.test_cfg['object_mask_threshold'], tol)


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_semantic_panoptic_instance(model, name):
    """Semantic map (values, one stage deeper than the log-probs); panoptic segments exactly and the
    panoptic map away from near ties of score x mask probability; the instance set (class, score, mask)
    when the 20th/21st score gap exceeds the score tolerance (case1's is 6e-5: not comparable)."""
    case, fx, out, result, _, _ = _run(model, name)
    tol = _tol_logits(fx, 'final_mask_cls_logprobs')
    tol_mask = tolerance_for(fx['pred_masks'], depth=DEPTH_HEAD, width=WIDTH_HEAD)
    assert_close(result.seg_logits.data, fx['sem_seg'], atol=(tol + 0.25 * tol_mask) * _mass(fx), scale=0.0,
                 name='sem_seg')
    pan = result.pred_panoptic_seg
    assert pan.segments_info == case['panoptic_segments_info']
    # score x probability: the score (<= the largest kept score) moves by score x its log-prob error
    top_score = float(F.softmax(torch.from_numpy(fx['final_mask_cls_logprobs'][0]), -1)[:, :-1].max())
    tol_pan = tol * top_score + 0.25 * tol_mask
    margin = _panoptic_margin(model, fx, case, out['padded_shape'], tol_pan)
    # random weights: kept segments of one class with scores ~4e-5 apart and overlapping masks make a
    # case-dependent share of a map (~10 % here) near ties at any float32 tolerance: the share is not bounded,
    # the other pixels are compared exactly and at most 10 pixels may differ at all
    assert_equal_away_from_ties(pan.data[0].numpy(), fx['panoptic_seg'], margin, tol_pan,
                                max_near_fraction=1.0, name='panoptic_seg')
    inst = result.pred_instances
    score_tol = tol * float(fx['instances_scores'].max(initial=0.0)) + 0.25 * tol_mask
    assert len(inst.scores) == len(fx['instances_scores'])
    if case['instance_topk_margin'] <= score_tol:
        return
    got = sorted(zip(inst.labels.tolist(), np.round(inst.scores.numpy(), 3).tolist()))
    ref = sorted(zip(fx['instances_pred_classes'].tolist(), np.round(fx['instances_scores'], 3).tolist()))
    assert [g[0] for g in got] == [r[0] for r in ref]
    order_got = np.lexsort((inst.scores.numpy(), inst.labels.numpy()))
    order_ref = np.lexsort((fx['instances_scores'], fx['instances_pred_classes']))
    assert_close(inst.scores.numpy()[order_got], fx['instances_scores'][order_ref], atol=score_tol, scale=0.0,
                 name='instance_scores')
    masks_got = inst.masks.numpy()[order_got]
    masks_ref = fx['instances_pred_masks'][order_ref].astype(bool)
    assert (masks_got != masks_ref).mean() < 1e-3  # mask logits within their tolerance of 0 may flip


@pytest.mark.parametrize('name', _case_names())
def test_parity_frozenseg_proposal_ensemble(model, name):
    """Run B (semantic only, the SAM mask-proposal ensemble on the stored synthetic proposals; the original
    re-runs the network and gets run A's decoder outputs bit for bit, so run A's are reused): proposal
    classification (CLIP logits, scale 100, depth 3 over 1024 channels), the kept set exactly away from the
    0.5 threshold, and the semantic map (as run A's)."""
    from mmseg.structures import SegDataSample
    case, fx, out, _, _, _ = _run(model, name)  # the decoder's outputs do not depend on the run
    model.set_vocabulary(_vocab(case), [i for i, v in enumerate(case['test_vocabulary']) if v['isthing']])
    h, w = case['input_hw']
    proposals = torch.from_numpy(fx['openseg_sam_proposal_logits'])
    meta = dict(img_shape=(h, w), ori_shape=tuple(case['output_hw']), sam_proposal_logits=proposals)
    saved = dict(model.test_cfg), model.use_proposals
    model.test_cfg.update(panoptic_on=False, instance_on=False)
    model.use_proposals = True
    try:
        with torch.no_grad():
            ov = model.classify_proposals(out, 0, proposals, (h, w)) if len(proposals) else None
            result = model.postprocess(out['log_probs'][0], out['pred_masks'][0], out['padded_shape'], meta,
                                       SegDataSample(metainfo=meta), semantic_fn=model.semantic_fn(out, 0, meta))
    finally:
        model.test_cfg.clear()
        model.test_cfg.update(saved[0])
        model.use_proposals = saved[1]
    tol_cls = tolerance_for(fx['openseg_sam_cls_logits'], depth=3, width=1024, scale=100.0)
    tol = _tol_logits(fx, 'final_mask_cls_logprobs')
    tol_mask = tolerance_for(fx['pred_masks'], depth=DEPTH_HEAD, width=WIDTH_HEAD)
    assert_close(result.seg_logits.data, fx['openseg_sem_seg'],
                 atol=(tol + 0.25 * tol_mask) * _mass(fx) + tol_cls * len(proposals), scale=0.0,
                 name='openseg_sem_seg')
    if ov is None:  # no proposal: the decoder's masks alone, as the original
        assert fx['openseg_sam_keep'].size == 0
        return
    assert_close(ov.pooled_raw, fx['openseg_sam_clip_mask_pooled_raw'], depth=4, width=1024, name='pooled')
    assert_close(ov.logits, fx['openseg_sam_cls_logits'], atol=tol_cls, scale=0.0, name='proposal_logits')
    probs = F.softmax(ov.logits[0], -1)[:, :-1] * (1 - model.seen_mask.float())
    unseen_max = probs.max(-1).values
    assert_close(unseen_max, fx['openseg_sam_unseen_maxprob'], atol=tol_cls, scale=0.0, name='unseen_max')
    assert_equal_away_from_ties((unseen_max > 0.5).numpy().astype(np.uint8), fx['openseg_sam_keep'],
                                threshold_margin(fx['openseg_sam_unseen_maxprob'], 0.5), tol_cls,
                                max_near_fraction=0.0, name='keep')
    assert int(fx['openseg_sam_keep'].sum()) == case['openseg_num_kept_proposals']
