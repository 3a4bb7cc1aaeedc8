"""Trident SAM-refinement parity (fixtures in $OVSEG_PARITY_DIR/sam_refine; any case the manifest lists).

Tolerances (``ovseg.testing.tolerance``), derived from the tiny SAM built here, not from one run:

* downsampled probabilities: one bilinear reduction of 4 terms on the scale 1; region means: one sum
  over the largest region; prompt coordinates: two roundings of values up to 1024.
* SAM image embedding: the encoder blocks plus the neck's two convolutions (``depth = blocks + 2``, width
  = the 3 x 3 conv's 9 x 256 terms). Mask logits and IoU predictions: that plus 4 stages per two-way
  decoder layer, the final attention, the upscaling and the 3-layer hypernetwork (``+ 4 x layers + 6``),
  relative to the largest value (linear stages carry a relative error through unchanged; |logit| < 0.1
  with these weights, so the tolerance is ~4e-6 there).
* stage-1 and refined scores: sigmoid(logit) (slope 1/4) times probabilities <= 1, plus the input
  probabilities themselves: the logits' tolerance.

Decisions are compared exactly away from near ties: the coarse-threshold test on the downsampled
probabilities, the highest-probability point of each region, the mask-prompt threshold, ``logit > 0`` of
the full-resolution masks, ``iou > threshold``, and the argmax of the merged scores. Where a mask's
logit lies within tolerance of 0 its union membership (and the 0-outside-the-union rule) may flip, so
the merged scores are compared away from those pixels, and the merge replays the fixture's keep decisions.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.postprocessors import SAMRefiner, packing_scores
from ovseg.testing import (assert_close, assert_equal_away_from_ties, det_state_dict_for, parity_dir,
                           threshold_margin, tolerance_for, top2_margin)

FOLDER = 'sam_refine'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
BILINEAR = dict(depth=1, width=4, scale=1.0)


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _cases():
    return sorted(_manifest()['cases']) if ROOT is not None else []


def _fixture_file(name, info):
    return ROOT / info.get('file', f'{name}.npz')


def sam_error_model(sam):
    """(embedding, decoder) float32 error models of a segment-anything ``Sam`` (module docstring)."""
    encoder, decoder = sam.image_encoder, sam.mask_decoder.transformer
    conv = encoder.neck[2].weight
    width = max(conv.shape[1] * conv.shape[2] * conv.shape[3], decoder.layers[0].mlp.lin1.out_features)
    embed = dict(depth=len(encoder.blocks) + 2, width=width)
    return embed, dict(depth=embed['depth'] + 4 * len(decoder.layers) + 6, width=width)


def _decoder_tol(run, expected):
    return dict(run['decoder'], scale=float(np.abs(expected).max(initial=0)))


@pytest.fixture(scope='module')
def runs():
    """Per case: the fixture, the refiner, its SAM outputs and error models, computed once (prompts and
    SAM outputs do not depend on the IoU threshold)."""
    cache = {}

    def get(name):
        if name not in cache:
            man = _manifest()
            info = man['cases'][name]
            fx = np.load(_fixture_file(name, info))
            refiner = SAMRefiner(sam=dict(type='SAMPredictor', arch='tiny'),
                                 coarse_thresh=info['coarse_thresh'],
                                 minimal_area=info['minimal_area'], mask_coeff=info['sam_mask_coff'],
                                 iou_thresh=info['sam_iou_thresh'], down_ratio=man.get('down_ratio', 2),
                                 failed_rule='reference', mask_prompt_layout='trident')
            sam = refiner.sam.model
            state = det_state_dict_for(sam, info['seed'], root=ROOT.parent)
            assert {k: list(v.shape) for k, v in state.items()} == info['weights']
            sam.load_state_dict(state)
            probs = torch.from_numpy(fx['seg_logits'])
            seg_pred = torch.from_numpy(fx['seg_pred'].astype(np.int64))
            out = refiner.prompt_regions(fx['image_uint8'], probs, seg_pred)
            embed, decoder = sam_error_model(sam)
            cache[name] = dict(info=info, fx=fx, refiner=refiner, out=out, probs=probs, embed=embed,
                               decoder=decoder, tie_rows=_tie_rows(info, fx, out))
        return cache[name]

    return get


def _tie_rows(info, fx, out):
    """Regions whose point prompt is a near tie (top two probabilities inside the region within
    tolerance): their prompt, and so their SAM outputs, may legitimately differ."""
    regions = out.regions
    tol = tolerance_for(regions.probs_down, **BILINEAR)
    rows = []
    for i, mask in enumerate(regions.masks()):
        values = regions.probs_down[regions.classes[i]][mask].numpy()
        if len(values) > 1 and top2_margin(values[:, None], axis=0)[0] <= tol:
            rows.append(i)
    assert len(rows) <= 2, f'{len(rows)} regions have near-tie point prompts'
    return rows


def _same_rows(run):
    keep = np.ones(run['info']['n_regions'], bool)
    keep[run['tie_rows']] = False
    return keep


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_regions_and_prompts(runs, case):
    run = runs(case)
    info, fx, regions, prompts = run['info'], run['fx'], run['out'].regions, run['out'].prompts
    # The coarse-threshold decision on the downsampled probabilities, exact away from ties.
    top = regions.probs_down.amax(dim=0)
    near, flips = assert_equal_away_from_ties(
        regions.pred_down, fx['seg_pred_down_with_ignore'][0], threshold_margin(top, info['coarse_thresh']),
        tolerance_for(regions.probs_down, **BILINEAR), name='pred_down')
    if flips:
        pytest.skip(f'{flips} near-tie pixels of the coarse threshold flipped: the regions legitimately differ')
    assert len(regions) == info['n_regions']
    np.testing.assert_array_equal(regions.index_map.numpy(), fx['region_index_map'])
    np.testing.assert_array_equal(regions.classes.numpy(), fx['region_class'])
    np.testing.assert_array_equal(regions.areas.numpy(), fx['region_area_down'])
    np.testing.assert_array_equal(regions.boxes.numpy(), fx['region_box_down_xyxy'])
    same = _same_rows(run)
    np.testing.assert_array_equal(regions.points.numpy()[same], fx['region_point_down_xy'][same])
    assert_close(regions.mean_probs, fx['region_mean_prob'], depth=2, width=int(fx['region_area_down'].max(initial=1)),
                 scale=1.0, name='region_mean_prob')
    np.testing.assert_array_equal(prompts.class_order.numpy(), fx['prompt_class_order'])
    np.testing.assert_array_equal(torch.bincount(prompts.mask_index).numpy(), fx['batch_sizes'])
    assert_close(prompts.boxes, fx['prompt_boxes_1024'], depth=2, name='prompt_boxes_1024')
    assert_close(prompts.points[same], fx['prompt_points_1024'][same], depth=2, name='prompt_points_1024')
    np.testing.assert_array_equal(prompts.point_labels.numpy(), fx['prompt_point_labels'])
    _check_mask_prompts(prompts.mask_inputs[:, 0].numpy(), fx['prompt_mask_input'], info)


def _check_mask_prompts(ours, expected, info):
    """coeff x p where the resized probability p exceeds the coarse threshold, else 0: the threshold is
    exact away from ties (p of a differing element is whichever side is non-zero), values close."""
    coeff, tol = info['sam_mask_coff'], tolerance_for(np.ones(1), depth=2, width=4)
    p = np.maximum(ours, expected) / coeff
    assert_equal_away_from_ties(ours > 0, expected > 0, threshold_margin(p, info['coarse_thresh']), tol,
                                name='mask prompt support')
    assert_close(ours, expected, depth=2, width=4, scale=coeff, where=(ours > 0) == (expected > 0),
                 name='prompt_mask_input')


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_sam_outputs(runs, case):
    run = runs(case)
    info, fx, refiner, out = run['info'], run['fx'], run['refiner'], run['out']
    same = _same_rows(run)
    assert tuple(out.sam_image.input_size) == tuple(info['predictor']['input_size'])
    assert tuple(out.sam_image.original_size) == tuple(info['predictor']['original_size'])
    assert_close(out.sam_image.embedding[0, :, ::4, ::4], fx['sam_image_embedding_sub'], **run['embed'],
                 name='sam_image_embedding')
    iou = out.iou.numpy()
    assert_close(iou[same], fx['sam_iou_pred'][same, 0], **_decoder_tol(run, fx['sam_iou_pred']), name='iou')
    stride8 = fx['sam_lowres_logits_stride8']
    tol = _decoder_tol(run, stride8)
    assert_close(out.low_res_logits[:, :, ::8, ::8][same], stride8[same], **tol, name='lowres_logits_stride8')
    rows = fx['sam_lowres_logits_full_idx']
    rows = rows[same[rows]]
    assert_close(out.low_res_logits[rows], fx['sam_lowres_logits_full'][same[fx['sam_lowres_logits_full_idx']]],
                 **tol, name='lowres_logits_full')
    logits = refiner.sam.upsample(out.low_res_logits, out.sam_image)
    expected = np.unpackbits(fx['sam_masks_fullres_packed'], axis=-1)[..., :logits.shape[-1]].astype(bool)
    assert_equal_away_from_ties((logits > 0).numpy()[same], expected[same], threshold_margin(logits[same], 0),
                                tolerance_for(stride8, **tol), name='full-resolution masks')


THRESHOLDS = {'main': 'sam_iou_thresh', 'lowered': 'lowered_iou_thresh'}


def _merged(run, threshold_key, failed_rule='reference'):
    """Our keep decisions (checked against the fixture's away from ties) and the merge run with the
    fixture's decisions, plus the pixels where a kept mask's logit is a near tie of 0."""
    info, fx, refiner, out = run['info'], run['fx'], run['refiner'], run['out']
    thresh = info[threshold_key]
    expected_keep = fx['sam_iou_pred'][:, 0] > thresh
    tol = tolerance_for(fx['sam_iou_pred'], **_decoder_tol(run, fx['sam_iou_pred']))
    assert_equal_away_from_ties((out.iou > thresh).numpy(), expected_keep,
                                threshold_margin(fx['sam_iou_pred'][:, 0], thresh), tol, max_near_fraction=1.0,
                                name='keep')
    refiner.failed_rule = failed_rule
    try:
        result = refiner.merge(out, run['probs'], keep=torch.from_numpy(expected_keep))
    finally:
        refiner.failed_rule = 'reference'
    logits = refiner.sam.upsample(out.low_res_logits[torch.from_numpy(expected_keep)], out.sam_image)[:, 0]
    logit_tol = tolerance_for(fx['sam_lowres_logits_stride8'], **_decoder_tol(run, fx['sam_lowres_logits_stride8']))
    boundary = (logits.abs() <= logit_tol).any(dim=0).numpy()
    assert boundary.mean() <= 0.01, f'{boundary.sum()} pixels lie on a near-tie mask boundary'
    return result, ~boundary, logit_tol


@pytest.mark.parametrize('run_name', ['main', 'lowered'])
@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_merge(runs, case, run_name):
    """Kept / rejected regions and the refined map at each threshold the fixture stores (arrays that a
    run does not store, e.g. stage-1 scores when nothing passes, are skipped)."""
    run = runs(case)
    info, fx, out, probs = run['info'], run['fx'], run['out'], run['probs']
    result, away, tol = _merged(run, THRESHOLDS[run_name])

    def has(name):
        return f'{run_name}_{name}' in fx.files

    def get(name):
        return fx[f'{run_name}_{name}']

    if run_name == 'main':
        assert int(result.keep.sum()) == info['n_pass_main']
    assert_close(out.iou[result.keep], get('kept_iou')[:, 0], **_decoder_tol(run, fx['sam_iou_pred']),
                 name='kept_iou')
    kept_boxes = out.regions.boxes[result.keep] * run['refiner'].down_ratio
    np.testing.assert_array_equal(kept_boxes.numpy(), get('kept_boxes_full_xyxy').reshape(-1, 4))
    if has('refined_logits_is_input'):
        assert result.changed != bool(get('refined_logits_is_input'))
    if not result.changed:
        assert torch.equal(result.logits, probs)
    if has('stage1_logits'):
        assert_close(result.stage1_logits, get('stage1_logits'), atol=tol, where=away[None], name='stage1_logits')
    if has('stage1_pred'):
        margin = np.where(away, top2_margin(get('stage1_logits'), axis=0), 0)
        assert_equal_away_from_ties(result.stage1_logits.argmax(0), get('stage1_pred')[0], margin, tol,
                                    max_near_fraction=1.0, name='stage1_pred')
    if has('failed_count'):
        assert int((~result.keep).sum()) == int(get('failed_count'))
    if has('failed_regions_fullres_union'):
        np.testing.assert_array_equal(result.failed_union.numpy(), get('failed_regions_fullres_union') > 0)
    refined = get('refined_logits') if has('refined_logits') else fx['seg_logits']
    margin = np.where(away, top2_margin(refined, axis=0), 0)
    assert_equal_away_from_ties(result.pred, get('refined_pred')[0], margin, tol, max_near_fraction=1.0,
                                name='refined_pred')
    if has('refined_logits'):
        assert_close(result.logits, get('refined_logits'), atol=tol, where=away[None], name='refined_logits')
    assert torch.equal(packing_scores(result, probs).argmax(0), result.pred)


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_fixed_failed_rule(runs, case):
    """'max_prob' changes the prediction only inside rejected regions, where the input beats stage 1."""
    run = runs(case)
    fx, probs = run['fx'], run['probs']
    result, away, tol = _merged(run, 'lowered_iou_thresh', failed_rule='max_prob')
    stage1 = fx['lowered_stage1_logits']
    failed = fx['lowered_failed_regions_fullres_union'] > 0
    beaten = failed & (fx['seg_logits'].max(0) > stage1.max(0))
    expected = np.where(beaten, fx['seg_pred'][0], fx['lowered_refined_pred'][0])
    beat_margin = np.where(failed, np.abs(fx['seg_logits'].max(0) - stage1.max(0)), np.inf)
    margin = np.minimum(beat_margin, top2_margin(fx['lowered_refined_logits'], axis=0))
    assert_equal_away_from_ties(result.pred, expected, np.where(away, margin, 0), tol, max_near_fraction=1.0,
                                name='max_prob prediction')
    assert_close(result.logits, fx['lowered_refined_logits'], atol=tol, where=away[None], name='refined_logits')
    assert torch.equal(packing_scores(result, probs).argmax(0), result.pred)


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_tolerance_catches_defects(runs, case):
    """Masks one pixel off (an off-by-one resize) and a mask prompt scaled by 0.006 instead of 0.005 fail."""
    run = runs(case)
    fx, refiner, out = run['fx'], run['refiner'], run['out']
    logits = refiner.sam.upsample(out.low_res_logits, out.sam_image)
    shifted = torch.roll(logits, 1, dims=-1)
    expected = np.unpackbits(fx['sam_masks_fullres_packed'], axis=-1)[..., :logits.shape[-1]].astype(bool)
    tol = tolerance_for(fx['sam_lowres_logits_stride8'], **_decoder_tol(run, fx['sam_lowres_logits_stride8']))
    with pytest.raises(AssertionError):
        assert_equal_away_from_ties((shifted > 0).numpy(), expected, threshold_margin(logits, 0), tol)
    with pytest.raises(AssertionError, match='prompt_mask_input'):
        _check_mask_prompts(out.prompts.mask_inputs[:, 0].numpy() * 1.2, fx['prompt_mask_input'], run['info'])
