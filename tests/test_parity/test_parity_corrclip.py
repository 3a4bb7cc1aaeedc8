"""CorrCLIP parity with the original code (fixtures in $OVSEG_PARITY_DIR/corrclip, zdk258/CorrCLIP ``CorrCLIPv1``).

Every case of the manifest is checked, with its mask proposals as an input: text and input, the
proposals at the input size; window 0 through DINO (q + k of the last block), mask merging (region
similarities, DBSCAN labels), scope restriction and attention rows, the mask-class token layout, CLIP's
blocks with the mask-class tokens, the three branches, the features and the window's logits; the
post-processing (background max, ``prob_thd``, map correction) on the fixture's synthetic tie-free
logits; and (slow) every window, the stitched and resized logits, the probabilities and the prediction.

Tolerances follow ``ovseg.testing.tolerance`` (``sqrt(depth * width) * eps32 * scale``): a tower token
after block i has depth i + 2 and width 3072 (the MLP) at the scale of the stored tokens; DINO's
normalised q + k features have scale 1 and depth DINO blocks + 3; cosine similarities one more stage
(width 3072 inherited); a window's mean similarity sums L x L terms (width L²); region-mean similarities
sum up to L features (width L). The attention logits are ``tau`` x similarities; a softmax moves a weight
by at most ``2 p max|Δlogit|``. The scope decisions (``sim > mean`` in the unsegmented region) and the
DBSCAN decisions (distance to ``eps``) are compared away from ties. The branches after the restricted
attention depend on both towers: depth = CLIP blocks + DINO blocks + the stages between. Logits are
cosines (scale 1); probabilities have the scale ``logit_scale``. The synthetic logits are exact
multiples of 1/1024 with gaps of at least 1/1024 between queries: the post-processing is compared
exactly away from the stored near-tie pixels.
"""
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.backbones.corrclip_affinity import merge_regions, nearest_labels, restricted_affinity
from ovseg.models.proposals.label_maps import map_correction
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.models.utils.vfm_input import clip_to_vfm_input
from ovseg.testing import (EPS32, assert_close, assert_equal_away_from_ties, parity_dir, threshold_margin,
                           tolerance_for, top2_margin)
from ovseg.testing.vfm_parity import (assert_prediction_rule_on_fixture_logits, case_arrays, cases, configure_corrclip,
                                      corrclip_segmentor, manifest, sample_for, segmentor_input, vfm_intermediates)

FOLDER = 'corrclip'
MLP = 3072
pytestmark = pytest.mark.skipif(parity_dir(FOLDER) is None, reason=f'parity fixtures not found: set '
                                f'OVSEG_PARITY_DIR to a folder holding {FOLDER}/')


@lru_cache(maxsize=1)
def _model():
    return corrclip_segmentor(FOLDER, cases(FOLDER)[0])


def _load(case):
    man, fx = manifest(FOLDER), case_arrays(FOLDER, case)
    info = man['cases'][case]
    assert info['dino_shapes'] == man['cases'][cases(FOLDER)[0]]['dino_shapes']  # one DINO for every case
    return man, info, configure_corrclip(_model(), FOLDER, case, fx['instance_mask']), fx


def _sample(info):
    return sample_for((info['H'], info['W']), (info['H0'], info['W0']))


def _window(fx, model, j):
    """Window j of the case: the (1, 3, h, w) image and the (1, h, w) proposals at the input size."""
    y1, x1, y2, x2 = (int(v) for v in fx['win_boxes'][j])
    image = torch.from_numpy(fx['pixel_values'])[:, :, y1:y2, x1:x2]
    labels = torch.from_numpy(fx['instance_mask_input'].astype(np.int64))[None, y1:y2, x1:x2]
    return image, labels


def _depths(man, model):
    return man['model']['open_clip_config']['vision_cfg']['layers'], model.vfm.depth


@lru_cache(maxsize=4)
def _window0(case):
    """Window 0 through both towers, once per case: DINO intermediates, restriction, CLIP walk with taps."""
    man, _, model, fx = _load(case)
    image, labels = _window(fx, model, 0)
    layers, _ = _depths(man, model)
    with torch.no_grad():
        vfm = vfm_intermediates(model.vfm, clip_to_vfm_input(image, model.vfm.mean, model.vfm.std))
        affinity, layout, extra = model.restriction(image, labels.float())
        taps = [f'blocks.{i}' for i in range(layers - 1)]
        result, feats = model.backbone.walk_branches(image, affinity, layout, taps=taps)
        emb = model.class_embeddings().embeddings
        lowres = torch.einsum('bchw,qc->bqhw', F.normalize(feats.dense, dim=1), emb)[0]
    return dict(vfm=vfm, affinity=affinity, layout=layout, extra=extra, result=result, dense=feats.dense[0],
                lowres=lowres.numpy())


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_corrclip_text_and_input(case):
    """Tokens, query indices and window boxes exactly; embeddings; the input; the proposals at input size."""
    man, info, model, fx = _load(case)
    assert model.vocabulary.synonyms == info['queries']
    tc = model.text_classifier
    prompts = [t.format(q) for q in model.vocabulary.synonyms for t in tc.templates]
    tokens = tc.tokenize(model.backbone, prompts).numpy().reshape(fx['text_tokens'].shape)
    np.testing.assert_array_equal(tokens, fx['text_tokens'])
    emb = model.class_embeddings()
    assert_close(emb.embeddings, fx['query_features'], depth=3, width=1024, scale=1.0, name='query_features')
    np.testing.assert_array_equal(emb.synonym_to_class.numpy(), fx['query_idx'])
    x = segmentor_input(fx['image_resized_uint8'], model.data_preprocessor)
    assert_close(x, fx['pixel_values'], name='pixel_values')
    maps, originals = model.label_maps(x, [_sample(info)])
    np.testing.assert_array_equal(maps[0, 0].numpy().astype(np.int64), fx['instance_mask_input'])
    np.testing.assert_array_equal(originals[0].numpy(), fx['instance_mask'])
    from ovseg.models.utils.sliding_window import window_boxes
    crop, stride = info['hyper']['slide_crop'], info['hyper']['slide_stride']
    boxes = [(y1, x1, y2, x2) for y1, y2, x1, x2 in window_boxes(info['H'], info['W'], (crop, crop), (stride, stride))]
    np.testing.assert_array_equal(np.asarray(boxes), fx['win_boxes'])


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_corrclip_dino_and_restriction(case):
    """DINO on window 0, mask merging, the scope of the correlations and the attention rows."""
    man, info, model, fx = _load(case)
    run = _window0(case)
    vdepth = model.vfm.depth
    toks, q = fx['dino_tok_idx'], fx['q_idx']
    vfm = run['vfm']
    assert_close(vfm['pos_grid'].numpy()[toks[1:] - 1], fx['w0_dino_pos_embed_sub'][1:], depth=1, width=16,
                 name='dino_pos')
    assert_close(vfm['tokens'].numpy()[toks], fx['w0_dino_tokens_sub'], depth=1, width=3 * 64, name='dino_tokens')
    for i in range(vdepth):
        assert_close(vfm[f'block{i}_out'].numpy()[toks], fx['w0_dino_blocks_out_sub'][i], depth=i + 2, width=MLP,
                     name=f'dino_block{i}')
    qkv = np.concatenate([vfm[s].numpy()[toks] for s in 'qkv'], axis=1)
    assert_close(qkv, fx['w0_dino_qkv_sub'], depth=vdepth + 1, width=MLP, name='dino_qkv')
    feats, extra = run['extra']['feats'][0].numpy(), run['extra']
    feat_model = dict(depth=vdepth + 3, width=MLP, scale=1.0)
    assert_close(feats[q], fx['win_dino_feats_rows'][0], name='dino_feats', **feat_model)
    np.testing.assert_array_equal(extra['labels'][0].numpy(), fx['win_masks_feat_premerge'][0])
    _check_merge(model, extra, fx, feats, vdepth)
    sim = feats @ feats.T
    sim_model = dict(depth=vdepth + 4, width=MLP, scale=1.0)
    sim_tol = assert_close(sim[q], fx['win_corr_rows'][0], name='corr_rows', **sim_model)
    mean_tol = assert_close(sim.mean(), fx['win_sim_mean'][0], depth=1, width=sim.size, scale=1.0, name='sim_mean')
    keep = run['affinity'].weights[0].numpy() > 0
    want = np.unpackbits(fx['win_scope_packed'][0], axis=-1)[:, :sim.shape[0]].astype(bool)
    margin = np.abs(sim - sim.mean())  # ours: an expected margin above the tolerance is one above zero here
    assert_equal_away_from_ties(keep, want, margin, 2 * (sim_tol + mean_tol), name='scope', max_flips=20)
    rows = (keep[q] == want[q]).all(axis=1)
    assert rows.sum() >= len(q) - 2
    tau, p_max = man['corrclip']['TAU'], float(fx['win_attn_rows'].max())
    atol = 2 * p_max * tau * sim_tol + 8 * EPS32 * p_max
    assert_close(run['affinity'].weights[0].numpy()[q][rows], fx['win_attn_rows'][0][rows], scale=0.0, atol=atol,
                 name='attn_rows')


def _check_merge(model, extra, fx, feats, vdepth):
    """Region values exactly; region similarities; DBSCAN labels and merged masks away from eps ties."""
    values = torch.unique(extra['labels'][0]).numpy()
    np.testing.assert_array_equal(values, fx['win_region_values'][0][:len(values)])
    merged, merge = merge_regions(extra['labels'][0], torch.from_numpy(feats), model.dbscan_eps,
                                  model.dbscan_min_samples, model.merge_offset)
    np.testing.assert_array_equal(merged.numpy(), extra['merged'][0].numpy())
    if not merge:
        np.testing.assert_array_equal(merged.numpy(), fx['win_masks_feat_merged'][0])
        return
    r = len(values) - 1
    want = fx['win_instance_sim'][0][:r, :r]
    tol = assert_close(merge['similarity'].numpy(), want, depth=vdepth + 5, width=feats.shape[0], scale=1.0,
                       name='instance_sim')
    distance = want.max() - want
    if np.abs(distance - model.dbscan_eps).min() > 2 * tol:  # no DBSCAN edge within the tolerance of eps
        np.testing.assert_array_equal(merge['clusters'].numpy(), fx['win_dbscan_labels'][0][:r])
        np.testing.assert_array_equal(merged.numpy(), fx['win_masks_feat_merged'][0])


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_corrclip_clip_window(case):
    """Window 0 through CLIP: mask-class layout, blocks (image and mask-class tokens), branches, logits."""
    man, info, model, fx = _load(case)
    run = _window0(case)
    layers, vdepth = _depths(man, model)
    layout, result = run['layout'], run['result']
    n = int(fx['win_n_mct'][0])
    assert layout.num_tokens == n
    token_grid = fx['win_masks_token'].shape[-2:]
    np.testing.assert_array_equal(nearest_labels(run['extra']['merged'], token_grid)[0].numpy(),
                                  fx['win_masks_token'][0])
    np.testing.assert_array_equal(layout.expand[0].numpy().reshape(fx['w0_expand_masks'].shape), fx['w0_expand_masks'])
    tok, q = fx['tok_idx'], fx['q_idx']
    for i in range(layers - 1):
        out = result.taps[f'blocks.{i}'][0].numpy()
        assert_close(out[n + tok], fx['w0_blocks_out_sub'][i], depth=i + 2, width=MLP, name=f'block{i}')
        assert_close(out[:n], fx['w0_blocks_mct'][i], depth=i + 2, width=MLP, name=f'block{i}_mct')
    spatial = torch.stack(result.streams['spatial']).mean(0)[0].numpy()
    assert_close(spatial[n + tok], fx['w0_spatial_mean_sub'], depth=layers, width=MLP, name='spatial_mean')
    both = dict(depth=layers + vdepth + 4, width=MLP)
    main, side, sem = (result.tokens[0], result.streams['corrclip_spatial'][0], result.streams['corrclip_semantic'][0])
    assert_close(main.numpy()[q], fx['w0_out_proj_rows'][0], name='main_out_proj', **both)
    assert_close(side.numpy()[q], fx['w0_out_proj_rows'][1], name='spatial_out_proj', **both)
    assert_close(sem.numpy()[q], fx['win_semantic_rows'][0], depth=layers + 1, width=MLP, name='semantic')
    visual = model.backbone.clip.visual
    with torch.no_grad():
        posts = [visual.ln_post(t).numpy()[q] for t in (main, side, sem)]
    for k, (name, post) in enumerate(zip(('main', 'spatial', 'semantic'), posts)):
        assert_close(post, fx['w0_ln_post_rows'][k], depth=both['depth'] + 1, width=MLP, name=f'ln_post_{name}')
    dense = run['dense'].flatten(1).T.numpy()
    assert_close(dense[q], fx['win_feat_rows'][0], depth=both['depth'] + 2, width=MLP, name='feat_rows')
    assert_close(run['lowres'], fx['win_logits_feat'][0], depth=both['depth'] + 3, width=MLP, scale=1.0,
                 name='win_logits_feat')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_corrclip_postprocess_synthetic(case):
    """Background max over line 0, prob_thd and map correction on the fixture's tie-free synthetic logits."""
    _, info, model, fx = _load(case)
    logits = torch.from_numpy(fx['syn_logits_q'].astype(np.float32) / 1024)[None]
    shape = (info['H0'], info['W0'])
    results = model.postprocess(logits, torch.zeros((1, 3) + shape), [sample_for(shape)])
    probs, pred = results[0].seg_logits.data, results[0].pred_sem_seg.data
    assert_close(probs[:, ::8, ::8], fx['syn_seg_prob_sub'], depth=1, width=logits.shape[1],
                 scale=model.logit_scale, name='syn_probs')
    keep = fx['syn_pred_thd_fragile'] == 0
    np.testing.assert_array_equal(pred[0].numpy()[keep], fx['syn_pred_thd'][keep])
    final = map_correction(pred, torch.from_numpy(fx['instance_mask'].astype(np.int64)))[0].numpy()
    keep = fx['syn_pred_final_fragile'] == 0
    np.testing.assert_array_equal(final[keep], fx['syn_pred_final'][keep])
    assert (final != pred[0].numpy()).any() == (fx['syn_pred_final'] != fx['syn_pred_thd']).any()


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_corrclip_prediction(case):
    """Every window's logits, the stitched and resized logits, probabilities and the final prediction."""
    man, info, model, fx = _load(case)
    layers, vdepth = _depths(man, model)
    depth = layers + vdepth + 7
    x = torch.from_numpy(fx['pixel_values'])
    with torch.no_grad():
        for j in range(len(fx['win_boxes'])):
            image, labels = _window(fx, model, j)
            lowres = model.lowres_logits(torch.cat([image, labels[:, None].float()], dim=1))[0]
            assert_close(lowres, fx['win_logits_feat'][j], depth=depth, width=MLP, scale=1.0,
                         name=f'win_logits_feat[{j}]')
        maps, originals = model.label_maps(x, [_sample(info)])
        stitched = model.inference(torch.cat([x, maps], dim=1))
        results = model.predict(x, [_sample(info)])
    assert_close(stitched[0, :, ::8, ::8], fx['stitched_sub'], depth=depth + 1, width=MLP, scale=1.0, name='stitched')
    resized = F.interpolate(stitched, size=(info['H0'], info['W0']), mode='bilinear', align_corners=False)[0]
    assert_close(resized[:, ::4, ::4], fx['seg_logits_sub'], depth=depth + 2, width=MLP, scale=1.0, name='seg_logits')
    probs = results[0].seg_logits.data
    scale = model.logit_scale
    tol = assert_close(probs[:, ::4, ::4], fx['seg_prob_sub'], depth=depth + 3, width=MLP, scale=scale,
                       name='seg_probs')
    emb = model.class_embeddings()
    assert_prediction_rule_on_fixture_logits(fx['seg_logits_sub'], fx['pred_thd'][::4, ::4], emb, scale,
                                              model.prob_thd, name='pred_thd (rule on the fixture logits)')
    raw, pred, _ = query_probabilities(resized, emb.synonym_to_class, emb.num_classes, scale, None, model.prob_thd)
    margin = np.minimum(top2_margin(raw.numpy(), axis=0), threshold_margin(raw.numpy().max(axis=0), model.prob_thd))
    # random weights give nearly flat class scores (text embeddings of different classes have cosines of
    # 0.93 to 0.97), so a large share of the pixels (a quarter to a half, depending on the case) lies within
    # the whole network's error bound of a tie: no bound on that share (the rule itself is checked above on
    # the fixture's logits); every other pixel must match, and at most 50 pixels may differ at all
    assert_equal_away_from_ties(pred[0].numpy(), fx['pred_thd'], margin, 2 * tol, name='pred_thd',
                                max_near_fraction=1.0, max_flips=50)
    final = results[0].pred_sem_seg.data[0].numpy()
    keep = fx['pred_final_fragile'] == 0
    np.testing.assert_array_equal(final[keep], fx['pred_final'][keep])


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_corrclip_tolerance_catches_defects(case):
    """Real defects fail by far: a temperature of 1 instead of 4, and no DINO features (uniform values)."""
    man, info, model, fx = _load(case)
    run = _window0(case)
    feats, merged = run['extra']['feats'], run['extra']['merged']
    q = fx['q_idx']
    wrong = restricted_affinity(feats, merged.flatten(1), merged.shape[-2:], tau=1.0).weights[0].numpy()[q]
    p_max = float(fx['win_attn_rows'].max())
    assert np.abs(wrong - fx['win_attn_rows'][0]).max() > 10 * (2 * p_max * 4 * 1e-5)
    # the CLIP logits without the semantic branch differ from the stored ones far beyond their tolerance
    visual = model.backbone.clip.visual
    result = run['result']
    with torch.no_grad():
        partial = visual.ln_post(result.tokens) + visual.ln_post(result.streams['corrclip_spatial'])
        partial = F.normalize(partial @ visual.proj, dim=-1)[0] @ model.class_embeddings().embeddings.T
    want = fx['win_logits_feat'][0].reshape(len(info['queries']), -1).T
    layers, vdepth = _depths(man, model)
    tol = tolerance_for(want, depth=layers + vdepth + 7, width=MLP, scale=1.0)
    assert np.abs(partial.numpy() - want).max() > 10 * tol
