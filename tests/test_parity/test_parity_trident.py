"""Trident parity with the original code (fixtures in $OVSEG_PARITY_DIR/trident, YuHengsss/Trident).

Every case of the manifest (CLIP ViT-B/16 geometry with 4 blocks and QuickGELU, DINO ViT-B/16 with 4
blocks, SAM vit_b width with 2 encoder blocks; Trident's VOC-21 settings) runs through
``TridentSegmentor.segment_image`` once; every stage the fixture's README lists is compared: text, the
resized input and its windows, DINO and CLIP on the windows, the DINO-guided attention, the splice, SAM's
input, encoder, last-block attention and values, the aggregation weights, the aggregated tokens, the CLIP
head, cosines, probabilities and prediction, and the refinement (regions, prompts, SAM outputs, both IoU
thresholds and both merge paths).

Tolerances (``ovseg.testing.tolerance``: ``z(N) sqrt(depth * width / 6) eps scale``). A token after
block i of a tower has depth i + 2 (patch embedding first) and the width of the MLP (3072), at the scale
of the stored tokens; a final norm, a cosine or a projection adds a stage. The proxy attention's output
depends on both towers (depth = CLIP blocks + DINO blocks + the stages between). SAM's encoder counts
its blocks plus the neck (``+ 2``); its decoder outputs add four stages per two-way layer and six more,
as in ``test_parity_sam_refine.py``. Cosines of unit vectors have the scale 1. The aggregation sums N
products (width N), probabilities carry ``logit_scale / 2`` times the cosines' error.

Decisions are compared away from ties. Two kinds of decision sit *inside* the pipeline: the proxy
attention cuts DINO similarities below ``β μ`` and the aggregation keeps SAM value cosines above a row
threshold; an entry within float32 tolerance of its cut may fall on the other side. The test measures
what such flips can do, from this run: each near-tie DINO entry is toggled alone and the change of its
token summed (``dino_tie_effects``); SAM's near-tie attention mass bounds the change of a weight row;
both are carried through the splice, the resize and the aggregation exactly and through ``ln_post``,
``proj`` and the cosine to first order (``propagate_allowance``). Downstream floats may differ by that
allowance on top of the float tolerance; decisions downstream are near ties within both. The bands use
the fixture's own reference values where it stores them (the window mean ``μ`` and every row threshold),
so that their offsets are measured, not assumed.

The refinement is also checked stage by stage: it is fed the probabilities the reference computes from
its stored cosine grid (the classification stage, checked on its own against the stored probabilities),
the reference's coarse prediction and this run's SAM embedding, and its outputs are compared as in
``test_parity_sam_refine.py``.
"""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.backbones.pos_embed import resize_pos_embed
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.models.utils.vfm_input import clip_to_vfm_input
from ovseg.testing import (assert_close, assert_equal_away_from_ties, float32_tolerance, parity_dir,
                           softmax_error_model, threshold_margin, tolerance_for, top2_margin)
from ovseg.testing.trident_parity import (FOLDER, assert_close_beyond, assert_prediction, cases, clip_window_taps,
                                          dino_tie_effects, manifest, probs_from_cos, propagate_allowance, run_case,
                                          trident_segmentor)
from ovseg.testing.vfm_parity import vfm_intermediates

pytestmark = pytest.mark.skipif(parity_dir(FOLDER) is None, reason=f'parity fixtures not found: set '
                                f'OVSEG_PARITY_DIR to a folder holding {FOLDER}/')
MLP = 3072


def _case_params():
    """The first case runs by default; the others are marked slow (each runs SAM at 1024 once)."""
    names = cases(FOLDER) if parity_dir(FOLDER) is not None else []
    return [pytest.param(n, marks=() if i == 0 else pytest.mark.slow) for i, n in enumerate(names)]


CASES = _case_params()


def _np(x):
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _depths():
    man = manifest(FOLDER)['model']
    return man['clip']['vision']['layers'], man['dino']['depth'], int(manifest(FOLDER)['model']['sam']['builder']
                                                                          .split('encoder_depth=')[1].split(',')[0])


@pytest.fixture(scope='module', params=CASES)
def run(request):
    """A case through the pipeline, once; pytest groups the tests by case, so one case's large maps are
    held at a time."""
    return _compute(request.param)


def _compute(case):
    model = trident_segmentor(FOLDER)
    man = manifest(FOLDER)
    info = man['cases'][case]
    clip_layers, dino_layers, sam_blocks = _depths()
    n_valid = int(np.prod(info['sam_valid_hw']))
    heads = model.sam.model.image_encoder.blocks[-1].attn.num_heads
    # a SAM value cosine and the threshold it meets: the encoder's blocks, the norm and the dot product
    sam_cos_tol = float32_tolerance(1.0, depth=sam_blocks + 3, width=MLP, count=heads * n_valid ** 2)
    model, fx, tr = run_case(FOLDER, case, sam_band=2 * sam_cos_tol)
    # measured offset of the thresholds from the reference's (all N stored) widens the band per row
    probe = tr['sam_probe']
    # test_parity_trident_sam_correlation checks the offset against the thresholds' tolerance; the band
    # widens by at most that tolerance, so a wrong threshold cannot widen the downstream allowances
    thr_tol = tolerance_for(fx['sam_sim_thresh'], depth=sam_blocks + 4, width=max(MLP, n_valid), scale=1.0)
    thr_offset = min(float(np.abs(_np(probe['thresh']) - fx['sam_sim_thresh']).max()), thr_tol)
    if thr_offset > sam_cos_tol:  # rerun with the measured band (not needed on the stored fixtures)
        model, fx, tr = run_case(FOLDER, case, sam_band=sam_cos_tol + thr_offset)
        probe = tr['sam_probe']
    taps = clip_window_taps(model, tr)
    last = clip_layers - 1
    values = taps[f'blocks.{last}.v'][:, 1:]
    feats = F.normalize(tr['vfm_feats'].float().flatten(2), dim=1)
    mu = float((feats.transpose(1, 2) @ feats).mean())
    n_win, length = values.shape[:2]
    sim_tol = float32_tolerance(1.0, depth=dino_layers + 3, width=MLP, count=n_win * length ** 2)
    dino_band = model.gamma * (sim_tol + model.beta * abs(mu - float(fx['dino_sim_mean'])))
    effect, near = dino_tie_effects(model, tr, values, dino_band)
    allow = propagate_allowance(model, tr, effect, probe)
    return dict(case=case, model=model, fx=fx, tr=tr, taps=taps, info=info, man=man, mu=mu, sim_tol=sim_tol,
                dino_band=dino_band, dino_near=near, effect=effect, allow=allow, sam_cos_tol=sam_cos_tol,
                depths=(clip_layers, dino_layers, sam_blocks))


# ------------------------------------------------------------------------------------- text, input
def test_parity_trident_text(run):
    """Prompt tokens exact; embeddings: the text tower's 2 blocks (width 1024) plus normalisation, mean
    and normalisation, on unit vectors (scale 1)."""
    model, fx, man = run['model'], run['fx'], run['man']
    templates = man['text']['templates']
    words = run['info']['query_words']
    tokens = model.backbone.tokenizer([t.format(w) for w in words for t in templates])
    np.testing.assert_array_equal(_np(tokens).reshape(fx['text_tokens'].shape), fx['text_tokens'])
    emb = model.class_embeddings()
    assert emb.synonym_to_class.tolist() == run['info']['query_class']
    text = man['model']['clip']['text']
    assert_close(emb.embeddings, fx['text_emb'], depth=text['layers'] + 4, width=4 * text['width'], scale=1.0,
                 name='text_emb')


def test_parity_trident_windows(run):
    """Resize (one bilinear reduction of 4 terms), window boxes and grid exact, no window padding."""
    fx, tr = run['fx'], run['tr']
    assert list(tr['clip_input'].shape[-2:]) == run['info']['clip_input_hw']
    assert_close(tr['clip_input'][0, :, ::4, ::4], fx['clip_input_sub'], depth=1, width=4, name='clip_input')
    np.testing.assert_array_equal(_np(tr['window_boxes']).astype(np.int64), fx['window_locs'])
    assert not fx['window_paddings'].any()  # windows are whole crops; ovseg pads none
    grid = (len(np.unique(fx['window_locs'][:, 0])), len(np.unique(fx['window_locs'][:, 1])))
    assert grid == tuple(fx['window_grid'])
    np.testing.assert_array_equal(_np(tr['splice_count']), fx['splice_count'])


# ---------------------------------------------------------------------------------- DINO, CLIP
def test_parity_trident_dino(run):
    """DINO input (the un-normalise / normalise round trip, 4 roundings), positional embedding (one bicubic
    reduction of 16 terms), block outputs (depth i + 2, width 3072) and the final norm (one more stage)."""
    model, fx, tr = run['model'], run['fx'], run['tr']
    x = clip_to_vfm_input(tr['windows'].float(), model.vfm.mean, model.vfm.std, model.clip_mean, model.clip_std)
    assert_close(x[:, :, ::4, ::4], fx['dino_input_sub'], depth=1, width=4, name='dino_input')
    tok = fx['tok_idx']
    inter = [vfm_intermediates(model.vfm, w[None]) for w in x]
    pos = resize_pos_embed(model.vfm.trunk.pos_embed[0], inter[0]['grid'], model.vfm.tower.default_pos_mode)
    assert_close(pos[tok], fx['dino_pos_embed_sub'], depth=1, width=16, name='dino_pos_embed')
    for i in range(run['depths'][1]):
        got = torch.stack([t[f'block{i}_out'][tok] for t in inter])
        assert_close(got, fx[f'dino_block{i}_out_sub'], depth=i + 2, width=MLP, name=f'dino block {i}')
    got = torch.stack([t['norm_out'][tok] for t in inter])
    assert_close(got, fx['dino_out_sub'], depth=run['depths'][1] + 2, width=MLP, name='dino_out')
    patches = tr['vfm_feats'].flatten(2).transpose(1, 2)[:, fx['patch_idx']]
    assert_close(patches, fx['dino_out_sub'][:, 1:], depth=run['depths'][1] + 2, width=MLP, name='vfm_feats')


def test_parity_trident_clip_blocks(run):
    """CLIP on the windows: positional embedding, ``ln_pre``, blocks before the last (depth i + 2), the
    last block's ``ln_1`` and values (one and two stages more)."""
    model, fx, taps = run['model'], run['fx'], run['taps']
    tok, pidx = fx['tok_idx'], fx['patch_idx']
    visual = model.backbone.clip.visual
    grid = tuple(d // 16 for d in run['tr']['windows'].shape[-2:])
    pos = resize_pos_embed(visual.positional_embedding, grid, model.backbone.pos_mode)
    assert_close(pos[tok], fx['clip_pos_embed_sub'], depth=1, width=16, name='clip_pos_embed')
    assert_close(taps['embed'][:, tok], fx['clip_ln_pre_out_sub'], depth=1, width=768, name='ln_pre')
    last = run['depths'][0] - 1
    for i in range(last):
        assert_close(taps[f'blocks.{i}'][:, tok], fx[f'clip_block{i}_out_sub'], depth=i + 2, width=MLP,
                     name=f'clip block {i}')
    assert_close(taps[f'blocks.{last}.ln_1'][:, 1:][:, pidx], fx['clip_last_ln1_sub'], depth=last + 2,
                 width=MLP, name='last ln_1')
    assert_close(taps[f'blocks.{last}.v'][:, 1:][:, pidx], fx['clip_v_sub'], depth=last + 3, width=MLP,
                 name='last v')


def test_parity_trident_proxy_attention(run):
    """The window mean of DINO's similarities (one reduction over all windows' entries), the attention rows
    (softmax: half the logits' error, the cut compared away from its near ties, rows with one left out)
    and the attention output (both towers' depth), except on rows with a near-tie cut."""
    fx, tr, pidx = run['fx'], run['tr'], run['fx']['patch_idx']
    n, length = tr['window_affinity'].weights.shape[:2]
    assert_close(run['mu'], fx['dino_sim_mean'], depth=run['depths'][1] + 3, width=max(MLP, n * length ** 2),
                 scale=1.0, name='dino_sim_mean')
    weights = _np(tr['window_affinity'].weights[:, pidx])
    feats = F.normalize(tr['vfm_feats'].float().flatten(2), dim=1)
    logits = _np(run['model'].gamma * (feats.transpose(1, 2) @ feats - run['model'].beta * run['mu']))[:, pidx]
    near = np.abs(logits) <= run['dino_band']
    assert_equal_away_from_ties(weights > 0, fx['dino_attn_rows'] > 0, np.abs(logits), run['dino_band'],
                                name='proxy attention cut')
    same_rows = ~near.any(axis=-1, keepdims=True)
    # a softmax moves each weight by at most half the logits' largest change (the band)
    assert_close(np.where(same_rows, weights, fx['dino_attn_rows']), fx['dino_attn_rows'], scale=0.0,
                 atol=run['dino_band'] / 2, name='dino_attn_rows')
    out = _np(tr['window_maps'].flatten(2).transpose(1, 2)[:, pidx])
    depth = sum(run['depths'][:2]) + 6
    assert_close_beyond(out, fx['clip_custom_attn_out_sub'], _np(run['effect'].flatten(2).transpose(1, 2)[:, pidx]),
                        'custom_attn_out', depth=depth, width=MLP)
    assert run['dino_near'] <= 0.01 * n * length ** 2, 'too many near ties for the comparison to say anything'


def test_parity_trident_splice(run):
    """The spliced map: the attention output averaged over the covering windows (one stage more)."""
    fx, tr, allow = run['fx'], run['tr'], run['allow']
    depth = sum(run['depths'][:2]) + 7
    spliced, spliced_allow = _np(tr['spliced'][0]), _np(allow['spliced'])
    assert_close_beyond(spliced.reshape(spliced.shape[0], -1)[:, fx['splice_idx']], fx['spliced_v_sub'],
                        spliced_allow.reshape(spliced.shape[0], -1)[:, fx['splice_idx']], 'spliced_v_sub',
                        depth=depth, width=MLP)
    assert_close_beyond(spliced[fx['spliced_ch_idx']], fx['spliced_v_ch'], spliced_allow[fx['spliced_ch_idx']],
                        'spliced_v_ch', depth=depth, width=MLP)


# ------------------------------------------------------------------------------------------- SAM
def _sam_model(run, extra=0):
    """Error model of SAM's encoder outputs: its blocks plus the neck's two convolutions (width 3072)."""
    return dict(depth=run['depths'][2] + 2 + extra, width=MLP)


def test_parity_trident_sam_encoder(run):
    """SAM's image (OpenCV resize, exact), its preprocessed input (one normalisation), patch embedding
    (one convolution of 768 terms), block outputs (depth i + 2), embedding (blocks + neck) and valid grid."""
    model, fx, tr, info = run['model'], run['fx'], run['tr'], run['info']
    np.testing.assert_array_equal(tr['sam_rgb'], fx['sam_image_uint8'])
    x, input_size, original_size = model.sam.prepare_image(tr['sam_rgb'])
    assert list(input_size) == info['sam_input_size'] and list(original_size) == info['sam_original_size']
    assert list(tr['sam_affinities'][0].grid) == info['sam_valid_hw']
    assert_close(x[0, :, ::8, ::8], fx['sam_encoder_input_sub'], depth=1, width=1, name='sam input')
    rows = fx['sam_row_idx_full64']
    taps = tr['sam_taps']
    assert_close(taps['patch_embed'].flatten(1, 2)[0, rows], fx['sam_patch_embed_sub'], depth=1, width=768,
                 name='sam patch_embed')
    for i in range(run['depths'][2]):
        assert_close(taps[f'block{i}'].flatten(1, 2)[0, rows], fx[f'sam_block{i}_out_sub'], depth=i + 2, width=MLP,
                     name=f'sam block {i}')
    assert_close(tr['sam_image'].embedding[0, :, ::4, ::4], fx['sam_embedding_sub'], **_sam_model(run),
                 name='sam embedding')


def test_parity_trident_sam_correlation(run):
    """The last block's attention rows (softmax over all keys: half the largest logit change, the logits
    a dot product of 64 terms after the blocks), values on the valid grid, value cosines and row
    thresholds (scale 1; the threshold's mean has N terms), and the aggregation weights: the float error
    of a ratio of N-term sums, plus the near-tie allowance of each row (module docstring)."""
    fx, tr, probe = run['fx'], run['tr'], run['tr']['sam_probe']
    blocks = run['depths'][2]
    # a softmax sees logit differences: their spread within a row (log of max / min weight) is the
    # scale of its input, and |dp| <= 2 p |dx| carries it to the weights
    rows = _np(fx['sam_last_attn_rows']).astype(np.float64)
    spread = float(np.log(rows.max(-1) / rows.min(-1)).max())
    assert_close(probe['attn_rows'], fx['sam_last_attn_rows'], depth=blocks + 2, width=MLP,
                 scale=2 * rows.max() * spread, name='sam_last_attn_rows')
    sh, sw = run['info']['sam_valid_hw']
    grid = int(math.isqrt(probe['v'].shape[1]))
    tok = fx['sam_tok_idx']
    v = probe['v'][:, (tok // sw) * grid + tok % sw]
    assert_close(v, fx['sam_last_v_sub'], depth=blocks + 1, width=MLP, name='sam_last_v')
    n_valid = sh * sw
    assert_close(probe['thresh'], fx['sam_sim_thresh'], depth=blocks + 4, width=max(MLP, n_valid), scale=1.0,
                 name='sam_sim_thresh')
    assert_close(probe['cos_rows'], fx['sam_sim_rows'], depth=blocks + 3, width=MLP, scale=1.0, name='sam_sim_rows')
    weights = _np(tr['sam_affinities'][0].weights[0][fx['sam_row_idx']])
    kept, ties = _np(probe['kept_mass'][fx['sam_row_idx']]), _np(probe['tie_mass'][fx['sam_row_idx']])
    ratio = ties / np.maximum(kept - ties, 1e-30)
    allowance = weights * ratio[:, None] + _np(probe['tie_rows']) / np.maximum(kept - ties, 1e-30)[:, None]
    assert_close_beyond(weights, fx['sam_agg_weights_rows'], allowance, 'sam_agg_weights_rows',
                        depth=blocks + 4, width=max(MLP, n_valid))


# ------------------------------------------------------------------------- aggregation and head
def _agg_model(run, extra=0):
    """Both towers, the splice and resize, and SAM's weights: one aggregation of N terms."""
    n_valid = int(np.prod(run['info']['sam_valid_hw']))
    return dict(depth=sum(run['depths']) + 12 + extra, width=max(MLP, n_valid))


def test_parity_trident_aggregation_and_head(run):
    """Resized splice (one bilinear stage), aggregated tokens, ``ln_post``, features after ``proj``; every
    one within its float tolerance beyond the propagated tie allowance."""
    model, fx, tr, allow = run['model'], run['fx'], run['tr'], run['allow']
    grid = tr['sam_affinities'][0].grid
    tok = fx['sam_tok_idx']
    resized = F.interpolate(tr['spliced'], size=grid, mode='bilinear', align_corners=False)[0].flatten(1)
    assert_close_beyond(resized[:, tok], fx['spliced_v_resized_sub'], allow['resized'].flatten(1)[:, tok],
                        'spliced_v_resized_sub', depth=sum(run['depths'][:2]) + 8, width=MLP)
    guided = tr['aggregated'][0].flatten(1)
    assert_close_beyond(guided[:, tok].T, fx['guided_out_sub'], allow['guided'].flatten(1)[:, tok].T,
                        'guided_out_sub', **_agg_model(run))
    visual = model.backbone.clip.visual
    ln = visual.ln_post(guided.T)
    assert_close_beyond(ln[tok], fx['clip_ln_post_out_sub'], allow['ln_post'].flatten(1)[:, tok].T, 'ln_post',
                        **_agg_model(run, 1))
    feats = model.backbone.project_dense(tr['aggregated'])[0].flatten(1)
    assert_close_beyond(feats[:, tok].T, fx['clip_feats_sub'], allow['feats'].flatten(1)[:, tok].T, 'clip_feats',
                        **_agg_model(run, 2))
    # the head alone, on the reference's aggregated tokens: tight
    assert_close(visual.ln_post(torch.from_numpy(fx['guided_out_sub'])), fx['clip_ln_post_out_sub'], depth=2,
                 width=768, name='ln_post (stage)')
    assert_close(torch.from_numpy(fx['clip_ln_post_out_sub']) @ visual.proj, fx['clip_feats_sub'], depth=1,
                 width=768, name='proj (stage)')


def test_parity_trident_classification(run):
    """Cosines on the SAM grid (scale 1, the head's depth) and at full size (one bilinear stage),
    probabilities (``logit_scale / 2`` times the cosines' error) and the coarse prediction away from its
    ties (the top-2 gap and the ``prob_thd`` test on the reference's own probabilities, recomputed from
    its stored cosine grid; the classification stage alone is checked on them too)."""
    model, fx, tr, allow = run['model'], run['fx'], run['tr'], run['allow']
    cos_model = dict(_agg_model(run, 4), scale=1.0)
    assert_close_beyond(tr['cos_grid'], fx['clip_cos_grid'], allow['cos'], 'clip_cos_grid', **cos_model)
    size = fx['coarse_pred'].shape
    cos_allow = F.interpolate(allow['cos'][None], size=size, mode='bilinear', align_corners=False)[0]
    logits, probs, pred = probs_from_cos(model, tr['cos_grid'], size)
    assert_close_beyond(logits[:, ::4, ::4], fx['seg_cos_sub'], cos_allow[:, ::4, ::4], 'seg_cos_sub',
                        **dict(_agg_model(run, 5), scale=1.0))
    prob_allow = model.logit_scale / 2 * cos_allow.amax(dim=0)
    prob_model = dict(_agg_model(run, 6), scale=model.logit_scale / 2)
    assert_close_beyond(tr['probs'][:, ::4, ::4], fx['seg_probs_sub'], prob_allow[None, ::4, ::4], 'seg_probs',
                        **prob_model)
    # the stage alone: the reference's cosine grid through ovseg's resize (4 terms) and probabilities
    logits_e, probs_e, pred_e = probs_from_cos(model, fx['clip_cos_grid'], size)
    stage_model = softmax_error_model(dict(depth=1, width=4), model.logit_scale * _np(logits_e))
    assert_close(probs_e[:, ::4, ::4], fx['seg_probs_sub'], **stage_model, name='seg_probs (stage)')
    margin = np.minimum(top2_margin(_np(probs_e)), threshold_margin(_np(probs_e).max(0), model.prob_thd))
    assert_prediction(pred_e[0], fx['coarse_pred'], margin, 2 * tolerance_for(probs_e, **stage_model),
                       'coarse_pred (stage)')
    # the pipeline's prediction: within the float tolerance and the tie allowance of each pixel
    tol = 2 * tolerance_for(probs_e, **prob_model)
    assert_prediction(tr['coarse_pred'][0], fx['coarse_pred'], margin - 2 * _np(prob_allow), tol, 'coarse_pred')


# ------------------------------------------------------------------------------------ refinement
def _refinement(run):
    """The refinement stage alone (computed once per case): the reference's probabilities (from its
    cosine grid) and coarse prediction, the original image and this run's SAM embedding."""
    if 'refinement' in run:
        return run['refinement']
    model, fx, tr = run['model'], run['fx'], run['tr']
    _, probs_e, _ = probs_from_cos(model, fx['clip_cos_grid'], fx['coarse_pred'].shape)
    coarse = torch.from_numpy(fx['coarse_pred'].astype(np.int64))
    out = model.sam_refiner.prompt_regions(fx['image_uint8'], probs_e, coarse, sam_image=tr['sam_image'])
    sam = model.sam.model
    width = max(MLP, sam.mask_decoder.transformer.layers[0].mlp.lin1.out_features)
    decoder = dict(depth=run['depths'][2] + 2 + 4 * len(sam.mask_decoder.transformer.layers) + 6, width=width)
    prob_tol = tolerance_for(probs_e, depth=3, width=4, scale=model.logit_scale / 2)
    run['refinement'] = dict(run=run, probs=probs_e, coarse=coarse, out=out, decoder=decoder, prob_tol=prob_tol)
    return run['refinement']


def test_parity_trident_refine_regions_and_prompts(run):
    """Half-resolution prediction (nearest, exact) and its coarse-threshold test away from ties; regions,
    boxes, areas and classes exact; points exact unless the region's top two probabilities tie; prompts
    in SAM's frame (two roundings of values up to 1024: the case-2 frame of 683 rows, not the embedding's
    671); mask prompts (a bilinear resize of the probabilities, times 0.005)."""
    ref = _refinement(run)
    fx, regions, prompts = ref['run']['fx'], ref['out'].regions, ref['out'].prompts
    top = _np(regions.probs_down.amax(dim=0))
    num = len(regions.probs_down)
    expected = fx['seg_pred_down_with_ignore']
    coarse_thresh = ref['run']['model'].sam_refiner.coarse_thresh
    assert_equal_away_from_ties(_np(regions.pred_down), expected, threshold_margin(top, coarse_thresh),
                                ref['prob_tol'], name='seg_pred_down_with_ignore')
    if not np.array_equal(_np(regions.pred_down), expected):
        pytest.skip('a near-tie pixel changed the half-resolution map: regions legitimately differ')
    np.testing.assert_array_equal(_np(regions.index_map), fx['region_index_map'])
    np.testing.assert_array_equal(_np(regions.classes), fx['region_class'])
    np.testing.assert_array_equal(_np(regions.areas), fx['region_area_down'])
    np.testing.assert_array_equal(_np(regions.boxes), fx['region_box_down_xyxy'])
    assert_close(regions.mean_probs, fx['region_mean_prob'], depth=2, width=int(fx['region_area_down'].max(initial=1)),
                 name='region_mean_prob')
    ties = []
    for i, mask in enumerate(regions.masks()):
        values = _np(regions.probs_down[regions.classes[i]][mask])
        if len(values) > 1 and top2_margin(values[:, None])[0] <= ref['prob_tol']:
            ties.append(i)
    same = np.ones(len(regions), bool)
    same[ties] = False
    np.testing.assert_array_equal(_np(regions.points)[same], fx['region_point_down_xy'][same])
    np.testing.assert_array_equal(_np(prompts.class_order), fx['prompt_class_order'])
    assert_close(prompts.points[:, 0][same], fx['prompt_points_1024'][same], depth=2, width=1, name='points')
    assert_close(prompts.boxes, fx['prompt_boxes_1024'], depth=2, width=1, name='boxes')
    assert_close(prompts.mask_inputs[:, 0, ::4, ::4], fx['prompt_mask_input_sub'], depth=4, width=4,
                 scale=0.005 * max(float(regions.probs_down.max()), 1e-30), name='mask prompts')
    assert num == len(ref['run']['info']['class_lines'])


def test_parity_trident_refine_sam_outputs(run):
    """Predicted IoUs and low-resolution mask logits: SAM's encoder and decoder depth (regions whose point
    prompt is a near tie left out)."""
    ref = _refinement(run)
    fx, out = ref['run']['fx'], ref['out']
    if out.iou is None:
        assert fx['sam_iou_pred'].size == 0
        return
    assert_close(out.iou, fx['sam_iou_pred'], **ref['decoder'], name='sam_iou_pred')
    assert_close(out.low_res_logits[:, 0, ::8, ::8], fx['sam_lowres_logits_stride8'], **ref['decoder'],
                 name='sam_lowres_logits')


def test_parity_trident_refine_merge(run):
    """Both IoU thresholds: the config's (0.8: nothing passes with random weights, the coarse map comes
    back) and the fixture's lowered one (its kept flags away from ties, then replayed): stage-1 and
    refined scores (sigmoid slope 1/4 times probabilities <= 1 on top of the logits' error), the kept-mask
    union and rejected-region union (exact away from mask logits near 0), and the refined prediction
    (away from ties of the refined scores)."""
    ref = _refinement(run)
    run, out, probs = ref['run'], ref['out'], ref['probs']
    fx, info, refiner = run['fx'], run['info'], run['model'].sam_refiner
    iou_tol = tolerance_for(fx['sam_iou_pred'], **ref['decoder']) if out.iou is not None else 0.0
    main_keep = _np(out.iou) > refiner.iou_thresh if out.iou is not None else np.zeros(0, bool)
    assert_equal_away_from_ties(main_keep, _np(fx['sam_iou_pred']) > refiner.iou_thresh,
                                threshold_margin(fx['sam_iou_pred'], refiner.iou_thresh), iou_tol,
                                name='kept at the config threshold')
    main = refiner.merge(out, probs)
    assert bool(fx['main_refined_is_input']) == (not main.changed)
    if not main.changed:
        np.testing.assert_array_equal(_np(main.pred), fx['main_refined_pred'])
    if out.iou is None:
        return
    thresh = float(info['lowered_iou_thresh'])
    keep = _np(out.iou) > thresh
    assert_equal_away_from_ties(keep, fx['lowered_kept'].astype(bool), threshold_margin(fx['sam_iou_pred'], thresh),
                                iou_tol, name='lowered_kept')
    low = refiner.merge(out, probs, keep=torch.from_numpy(fx['lowered_kept'].astype(bool)))
    masks = refiner.sam.upsample(out.low_res_logits[low.keep], out.sam_image)[:, 0]
    masks = F.interpolate(masks[None], fx['coarse_pred'].shape, mode='bilinear', align_corners=False)[0]
    mask_tol = tolerance_for(masks, **ref['decoder'])
    union_margin = np.abs(_np(masks)).min(axis=0) if len(masks) else np.full(fx['coarse_pred'].shape, np.inf)
    assert_equal_away_from_ties(_np((masks > 0).any(dim=0)), fx['lowered_kept_masks_union'].astype(bool),
                                union_margin, mask_tol, max_flips=int((union_margin <= mask_tol).sum()),
                                name='kept-mask union')
    np.testing.assert_array_equal(_np(low.failed_union), fx['lowered_failed_union'].astype(bool))
    # sigmoid(logit) * p moves by at most a quarter of the logit's error plus the probability's
    score_tol = mask_tol / 4 + ref['prob_tol']
    stable = (union_margin > mask_tol)[None, ::4, ::4]  # a union flip switches a score between 0 and ~p / 2
    for name, actual, key in (('stage-1 scores', low.stage1_logits, 'lowered_stage1_logits_sub'),
                              ('refined scores', low.logits, 'lowered_refined_logits_sub')):
        assert_close(actual[:, ::4, ::4], fx[key], scale=0.0, atol=score_tol, where=stable, name=name)
    margin = np.minimum(top2_margin(_np(low.logits)), union_margin)
    assert_prediction(low.pred, fx['lowered_refined_pred'], margin, 2 * score_tol, 'lowered_refined_pred')
    stage1 = np.where(_np(low.stage1_logits.sum(0)) > 0, _np(low.stage1_logits.argmax(0)), fx['coarse_pred'])
    assert_prediction(stage1, fx['lowered_stage1_pred'], np.minimum(top2_margin(_np(low.stage1_logits)),
                       union_margin), 2 * score_tol, 'stage-1 pred')


def test_parity_trident_final_prediction(run):
    """``Trident.predict``'s prediction (the config threshold 0.8) against the pipeline's, away from the
    ties of the reference's probabilities (float tolerance and tie allowance, as the coarse prediction)."""
    model, fx, tr, allow = run['model'], run['fx'], run['tr'], run['allow']
    size = fx['pred_final'].shape
    _, probs_e, _ = probs_from_cos(model, fx['clip_cos_grid'], size)
    cos_allow = F.interpolate(allow['cos'][None], size=size, mode='bilinear', align_corners=False)[0]
    prob_allow = _np(model.logit_scale / 2 * cos_allow.amax(dim=0))
    margin = np.minimum(top2_margin(_np(probs_e)), threshold_margin(_np(probs_e).max(0), model.prob_thd))
    tol = 2 * tolerance_for(probs_e, **_agg_model(run, 6), scale=model.logit_scale / 2)
    if not bool(fx['main_refined_is_input']):  # SAM kept masks at 0.8: the refined scores decide too
        ref = _refinement(run)
        main = model.sam_refiner.merge(ref['out'], ref['probs'])
        margin = np.minimum(margin, top2_margin(_np(main.logits)))
    else:
        np.testing.assert_array_equal(_np(tr['pred']), _np(tr['coarse_pred']))
    assert_prediction(tr['pred'][0], fx['pred_final'], margin - 2 * prob_allow, tol, 'pred_final')


def test_parity_trident_tolerance_catches_defects(run):
    """Defects of the size a wrong port makes fail these tolerances: the DINO similarity mean taken per
    window instead of over all windows, windows summed instead of averaged in the splice, aggregation
    weights left unnormalised, and probabilities at logit scale 50 instead of 40."""
    from ovseg.models.backbones.affinity import affinity_from_features
    model, fx, tr, allow = run['model'], run['fx'], run['tr'], run['allow']
    per_window = affinity_from_features(tr['vfm_feats'].float(), scale=model.gamma, shift=model.beta,
                                        min_value=0.0, mean_over='image')
    with pytest.raises(AssertionError):
        assert_close(per_window.weights[:, fx['patch_idx']], fx['dino_attn_rows'], scale=0.0,
                     atol=run['dino_band'] / 2, name='per-window mean')
    spliced = tr['spliced'][0].flatten(1) * tr['splice_count'].flatten()[None]
    with pytest.raises(AssertionError):
        assert_close_beyond(spliced[:, fx['splice_idx']], fx['spliced_v_sub'],
                            allow['spliced'].flatten(1)[:, fx['splice_idx']], 'summed splice',
                            depth=sum(run['depths'][:2]) + 7, width=MLP)
    tok = fx['sam_tok_idx']
    unnormalised = tr['aggregated'][0].flatten(1) * tr['sam_probe']['kept_mass'][None]
    with pytest.raises(AssertionError):
        assert_close_beyond(unnormalised[:, tok].T, fx['guided_out_sub'], allow['guided'].flatten(1)[:, tok].T,
                            'unnormalised aggregation', **_agg_model(run))
    emb = model.class_embeddings()
    logits = F.interpolate(torch.from_numpy(fx['clip_cos_grid'])[None], size=fx['coarse_pred'].shape,
                           mode='bilinear', align_corners=False)[0]
    probs = query_probabilities(logits, emb.synonym_to_class, emb.num_classes, 50.0)[0]
    with pytest.raises(AssertionError):
        assert_close(probs[:, ::4, ::4], fx['seg_probs_sub'],
                     **softmax_error_model(dict(depth=1, width=4), 50.0 * _np(logits)), name='logit scale 50')
