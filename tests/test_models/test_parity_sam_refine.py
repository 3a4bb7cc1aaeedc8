"""Trident SAM-refinement parity (fixtures in $OVSEG_PARITY_DIR/sam_refine; any case the manifest lists)."""
import json

import numpy as np
import pytest
import torch

from ovseg.models.proposals import SAMRefiner, packing_scores
from ovseg.testing import det_state_dict_for, parity_dir

FOLDER = 'sam_refine'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _cases():
    return sorted(_manifest()['cases']) if ROOT is not None else []


def _fixture_file(name, info):
    return ROOT / info.get('file', f'{name}.npz')


@pytest.fixture(scope='module')
def runs():
    """Per case: (info, arrays, refiner, SAM outputs), computed once (prompts and SAM outputs do not
    depend on the IoU threshold)."""
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
            cache[name] = (info, fx, refiner, out)
        return cache[name]

    return get


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_regions_and_prompts(runs, case):
    info, fx, refiner, out = runs(case)
    regions, prompts = out.regions, out.prompts
    assert len(regions) == info['n_regions']
    np.testing.assert_array_equal(regions.pred_down.numpy(), fx['seg_pred_down_with_ignore'][0])
    np.testing.assert_array_equal(regions.index_map.numpy(), fx['region_index_map'])
    np.testing.assert_array_equal(regions.classes.numpy(), fx['region_class'])
    np.testing.assert_array_equal(regions.areas.numpy(), fx['region_area_down'])
    np.testing.assert_allclose(regions.boxes.numpy(), fx['region_box_down_xyxy'], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(regions.points.numpy(), fx['region_point_down_xy'])
    np.testing.assert_allclose(regions.mean_probs.numpy(), fx['region_mean_prob'], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(prompts.class_order.numpy(), fx['prompt_class_order'])
    np.testing.assert_array_equal(torch.bincount(prompts.mask_index).numpy(), fx['batch_sizes'])
    np.testing.assert_allclose(prompts.boxes.numpy(), fx['prompt_boxes_1024'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(prompts.points.numpy(), fx['prompt_points_1024'], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(prompts.point_labels.numpy(), fx['prompt_point_labels'])
    np.testing.assert_allclose(prompts.mask_inputs[:, 0].numpy(), fx['prompt_mask_input'], atol=1e-6, rtol=0)


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_sam_outputs(runs, case):
    info, fx, refiner, out = runs(case)
    assert tuple(out.sam_image.input_size) == tuple(info['predictor']['input_size'])
    assert tuple(out.sam_image.original_size) == tuple(info['predictor']['original_size'])
    np.testing.assert_allclose(out.sam_image.embedding[0, :, ::4, ::4].numpy(), fx['sam_image_embedding_sub'],
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.iou.numpy(), fx['sam_iou_pred'][:, 0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.low_res_logits[:, :, ::8, ::8].numpy(), fx['sam_lowres_logits_stride8'],
                               atol=1e-4, rtol=0)
    rows = torch.from_numpy(fx['sam_lowres_logits_full_idx'])
    np.testing.assert_allclose(out.low_res_logits[rows].numpy(), fx['sam_lowres_logits_full'],
                               atol=1e-4, rtol=0)
    masks = (refiner.sam.upsample(out.low_res_logits, out.sam_image) > 0).numpy()
    np.testing.assert_array_equal(np.packbits(masks, axis=-1), fx['sam_masks_fullres_packed'])


THRESHOLDS = {'main': 'sam_iou_thresh', 'lowered': 'lowered_iou_thresh'}


@pytest.mark.parametrize('run', ['main', 'lowered'])
@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_merge(runs, case, run):
    """Kept / rejected regions and the refined map at each threshold the fixture stores (arrays that a
    run does not store, e.g. stage-1 scores when nothing passes, are skipped)."""
    info, fx, refiner, out = runs(case)
    probs = torch.from_numpy(fx['seg_logits'])
    result = refiner.merge(out, probs, iou_thresh=info[THRESHOLDS[run]])

    def has(name):
        return f'{run}_{name}' in fx.files

    def get(name):
        return fx[f'{run}_{name}']

    if run == 'main':
        assert int(result.keep.sum()) == info['n_pass_main']
    np.testing.assert_allclose(out.iou[result.keep].numpy(), get('kept_iou')[:, 0], atol=1e-5, rtol=0)
    kept_boxes = out.regions.boxes[result.keep] * refiner.down_ratio
    np.testing.assert_allclose(kept_boxes.numpy(), get('kept_boxes_full_xyxy').reshape(-1, 4),
                               atol=1e-6, rtol=0)
    if has('refined_logits_is_input'):
        assert result.changed != bool(get('refined_logits_is_input'))
    if not result.changed:
        assert torch.equal(result.logits, probs)
    if has('stage1_logits'):
        np.testing.assert_allclose(result.stage1_logits.numpy(), get('stage1_logits'), atol=1e-5, rtol=0)
    if has('stage1_pred'):
        np.testing.assert_array_equal(result.stage1_logits.argmax(0).numpy(), get('stage1_pred')[0])
    if has('failed_count'):
        assert int((~result.keep).sum()) == int(get('failed_count'))
    if has('failed_regions_fullres_union'):
        np.testing.assert_array_equal(result.failed_union.numpy(), get('failed_regions_fullres_union') > 0)
    np.testing.assert_array_equal(result.pred.numpy(), get('refined_pred')[0])
    if has('refined_logits'):
        np.testing.assert_allclose(result.logits.numpy(), get('refined_logits'), atol=1e-5, rtol=0)
    assert torch.equal(packing_scores(result, probs).argmax(0), result.pred)


@pytest.mark.parametrize('case', _cases())
def test_parity_sam_refine_fixed_failed_rule(runs, case):
    """'max_prob' changes the prediction only inside rejected regions, where the input beats stage 1."""
    info, fx, refiner, out = runs(case)
    probs = torch.from_numpy(fx['seg_logits'])
    refiner.failed_rule = 'max_prob'
    try:
        result = refiner.merge(out, probs, iou_thresh=info['lowered_iou_thresh'])
    finally:
        refiner.failed_rule = 'reference'
    stage1 = fx['lowered_stage1_logits']
    failed = fx['lowered_failed_regions_fullres_union'] > 0
    beaten = failed & (fx['seg_logits'].max(0) > stage1.max(0))
    expected = np.where(beaten, fx['seg_pred'][0], fx['lowered_refined_pred'][0])
    np.testing.assert_array_equal(result.pred.numpy(), expected)
    np.testing.assert_allclose(result.logits.numpy(), fx['lowered_refined_logits'], atol=1e-5, rtol=0)
    assert torch.equal(packing_scores(result, probs).argmax(0), result.pred)
