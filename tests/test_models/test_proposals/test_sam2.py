"""SAM 2 backend: ovseg's prompts, proposals, refinement and clicks equal transformers' own Sam2Model and
Sam2Processor outputs on the same inputs (a tiny random SAM 2 built by transformers).

Tolerances: the reference and ovseg run the same transformers modules on the same float32 inputs, so the
float outputs agree to the float32 error model of :mod:`ovseg.testing.tolerance` for SAM 2's mask
decoder: depth 4 (two two-way blocks, the final token-to-image attention, the upscaling and hypernetwork
product), width 256 (the 16 x 16 image tokens, the longest reduction). Decisions (masks above 0, masks
kept above an IoU or stability threshold, NMS order) are compared exactly after checking that no expected
score lies within that tolerance of its threshold (and away from ties otherwise).
"""
import numpy as np
import pytest
import torch

from ovseg.models.backbones import WeightsUnavailableError
from ovseg.models.postprocessors import SAMRefiner
from ovseg.models.proposals import SAM2Predictor, SAMAutomaticProposals, build_region_prompts, build_sam2_config
from ovseg.models.proposals import hf_weights
from ovseg.registry import MODELS
from ovseg.testing import (assert_close, assert_equal_away_from_ties, assert_same_order, threshold_margin,
                           tiny_maskclip_cfg, tolerance_for)
from ovseg.testing.sam_hf import TINY_SAM2_SIZE, tiny_sam2

transformers = pytest.importorskip('transformers')
DEPTH, WIDTH = 4, 256  # SAM 2 mask decoder (module docstring)


@pytest.fixture(scope='module')
def sam2():
    return tiny_sam2()


@pytest.fixture(scope='module')
def processor(sam2):
    return transformers.Sam2Processor(sam2.processor)


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def state(sam2, image):
    return sam2.embed_image(image)


def reference(sam2, processor, image, multimask=True, input_masks=None, **prompts):
    """transformers' path: the processor scales the pixel prompts, Sam2Model decodes them."""
    inputs = processor(images=image, return_tensors='pt', **prompts)
    with torch.no_grad():
        return sam2.model(**inputs, multimask_output=multimask, input_masks=input_masks)


def check_masks(ours, expected):
    assert_close(ours.low_res_logits, expected.pred_masks[0], depth=DEPTH, width=WIDTH, name='mask logits')
    assert_close(ours.iou, expected.iou_scores[0], depth=DEPTH, width=WIDTH, scale=1.0, name='iou')


def test_registered_frozen_and_checked(sam2):
    assert MODELS.get('SAM2Predictor') is SAM2Predictor
    assert not any(p.requires_grad for p in sam2.parameters())
    assert sam2.image_size == TINY_SAM2_SIZE and sam2.mask_input_size == (64, 64) and sam2.square_input
    with pytest.raises(ValueError, match='Unknown SAM 2 arch'):
        build_sam2_config('hiera_x')
    with pytest.raises(ValueError, match='multiple of 32'):
        build_sam2_config('tiny', 250)
    with pytest.raises(ValueError, match='not both'):
        SAM2Predictor(pretrained='facebook/sam2.1-hiera-large', arch='tiny')


@pytest.mark.parametrize('case', ['points', 'boxes', 'points_and_box', 'shared_mask', 'per_prompt_masks'])
def test_prompts_equal_transformers(sam2, processor, image, state, case):
    points = np.array([[[10.0, 20.0], [60.0, 30.0]], [[70.0, 5.0], [5.0, 40.0]]])
    labels = np.array([[1, 0], [1, 1]])
    boxes = np.array([[5.0, 5.0, 40.0, 30.0], [20.0, 0.0, 80.0, 48.0]])
    masks = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    if case == 'points':
        ours = sam2.predict(state, points, labels)
        expected = reference(sam2, processor, image, input_points=[points.tolist()],
                             input_labels=[labels.tolist()])
    elif case == 'boxes':  # single-mask output: SAM 2 falls back to the best multimask output when unstable
        ours = sam2.predict(state, boxes=boxes, multimask_output=False)
        expected = reference(sam2, processor, image, multimask=False, input_boxes=[boxes.tolist()])
    elif case == 'points_and_box':
        ours = sam2.predict(state, points[:1], labels[:1], boxes[:1])
        expected = reference(sam2, processor, image, input_points=[points[:1].tolist()],
                             input_labels=[labels[:1].tolist()], input_boxes=[boxes[:1].tolist()])
    elif case == 'shared_mask':
        ours = sam2.predict(state, points, labels, mask_input=masks[:1])
        expected = reference(sam2, processor, image, input_masks=masks[:1], input_points=[points.tolist()],
                             input_labels=[labels.tolist()])
    else:  # one mask prompt per prompt: each is its own decoder batch in transformers too
        ours = sam2.predict(state, points, labels, mask_input=masks)
        rows = [reference(sam2, processor, image, input_masks=masks[i:i + 1],
                          input_points=[points[i:i + 1].tolist()], input_labels=[labels[i:i + 1].tolist()])
                for i in range(2)]
        expected = type(rows[0])(pred_masks=torch.cat([r.pred_masks for r in rows], dim=1),
                                 iou_scores=torch.cat([r.iou_scores for r in rows], dim=1))
    check_masks(ours, expected)


def test_upsample_equals_post_process_masks(sam2, processor, image, state):
    out = sam2.predict(state, [[[10.0, 20.0]]], [[1]])
    up = sam2.upsample(out.low_res_logits, state)
    expected = processor.post_process_masks(out.low_res_logits[None], [[48, 80]], binarize=False)[0]
    assert up.shape == (1, 3, 48, 80)
    assert_close(up, expected, depth=1, width=4, name='upsampled logits')


def transformers_generator(sam2, processor, image, points_per_side, points_per_batch, iou, stability, nms):
    """transformers' automatic mask generation on the same grid: Sam2Model on point batches, then the image
    processor's post_process_masks, filter_masks (IoU, stability > threshold, boxes) and NMS."""
    from segment_anything.utils.amg import build_point_grid
    height, width = image.shape[:2]
    grid = build_point_grid(points_per_side) * np.array([[width, height]])
    ip = sam2.processor
    inputs = processor(images=image, return_tensors='pt')
    with torch.no_grad():
        embeddings = sam2.model.get_image_embeddings(inputs['pixel_values'])
    kept, candidates = ([], [], []), dict(iou=[], stability=[])
    for start in range(0, len(grid), points_per_batch):
        batch = grid[start:start + points_per_batch]
        prompts = processor(original_sizes=[[height, width]], input_points=[[[p] for p in batch.tolist()]],
                            input_labels=[[[1]] * len(batch)], return_tensors='pt')
        with torch.no_grad():
            out = sam2.model(image_embeddings=embeddings, input_points=prompts['input_points'],
                             input_labels=prompts['input_labels'])
        masks = ip.post_process_masks(out.pred_masks, [[height, width]], binarize=False)[0]
        candidates['iou'].append(out.iou_scores[0].flatten())
        logits = masks.flatten(0, 1)
        inter = (logits > 1.0).sum(dim=(1, 2)).float()
        candidates['stability'].append(inter / (logits > -1.0).sum(dim=(1, 2)).float())
        rles, scores, boxes = ip.filter_masks(masks, out.iou_scores[0], (height, width),
                                              [0, 0, width, height], iou, stability, 0.0, 1.0)
        for part, value in zip(kept, (rles, scores, boxes)):
            part.append(value)
    rles = [r for part in kept[0] for r in part]
    if not rles:
        return [], torch.zeros(0), torch.zeros(0, 4), candidates
    masks, scores, _, boxes = ip.post_process_for_mask_generation(rles, torch.cat(kept[1]),
                                                                  torch.cat(kept[2]), nms)
    return masks, scores, boxes, candidates


@pytest.mark.parametrize('iou,stability,nms', [
    (0.0, 0.0, 1.0),    # filters and NMS off: every candidate, in score order
    (0.55, 0.4, 1.0),   # some candidates fail each filter
    (0.0, 0.0, 0.7),    # segment-anything's NMS threshold (random masks overlap: few survive)
    (0.88, 0.95, 0.7),  # the defaults keep nothing from random weights: the empty case
])
def test_automatic_proposals_equal_transformers_generation(sam2, processor, image, iou, stability, nms):
    masks, scores, boxes, candidates = transformers_generator(sam2, processor, image, 6, 16, iou, stability,
                                                              nms)
    proposals = SAMAutomaticProposals(sam=sam2, points_per_side=6, points_per_batch=16, pred_iou_thresh=iou,
                                      stability_score_thresh=stability, box_nms_thresh=nms)(image)
    # No candidate score at its threshold: transformers keeps stability > t, ovseg (like segment-anything
    # and SAM 2's own generator) >= t, which differ only where a float32 stability (a ratio of pixel
    # counts) equals float32(t) exactly.
    cand_iou, cand_stab = torch.cat(candidates['iou']), torch.cat(candidates['stability'])
    iou_tol = tolerance_for(cand_iou, DEPTH, WIDTH, scale=1.0)
    if iou > 0:
        assert threshold_margin(cand_iou, iou).min() > iou_tol
    if stability > 0:
        assert (cand_stab != torch.tensor(stability, dtype=torch.float32)).all()
    assert len(proposals) == len(masks)
    if not len(masks):  # the default thresholds keep nothing from random weights: the empty case
        assert proposals.masks.shape == (0, 48, 80)
        return
    # Match every proposal to the reference mask with the same pixels; the order may differ only between
    # neighbours whose scores are near ties (NMS and the output are sorted by predicted IoU).
    index = {}
    for i, mask in enumerate(masks):
        index.setdefault(mask.numpy().tobytes(), []).append(i)
    matched = [index[m.numpy().tobytes()].pop(0) for m in proposals.masks]
    assert_same_order(np.array(matched), np.arange(len(masks)), scores, iou_tol, name='proposal order')
    assert_close(proposals.iou, scores[matched], depth=DEPTH, width=WIDTH, scale=1.0, name='iou')
    assert torch.equal(proposals.boxes, boxes[matched].long())


def test_refinement_decodes_regions_as_transformers(sam2, image):
    """Trident-style refinement on SAM 2 ('batched' mask prompts): every region's IoU and logits equal
    Sam2Model's for the same box, point and class mask prompt; the square frame maps pixels to it."""
    refiner = SAMRefiner(sam=sam2, coarse_thresh=0.2, minimal_area=4, mask_prompt_layout='batched')
    probs = torch.zeros(3, 48, 80)
    probs[0, :, :40], probs[1, :, 40:], probs[2, 30:, 20:60] = 0.9, 0.8, 0.95
    probs = probs.softmax(dim=0)
    result = refiner.prompt_regions(image, probs)
    prompts = result.prompts
    assert len(result.regions) >= 2
    down_h, down_w = result.regions.down_size
    expected_points = result.regions.points.float() * torch.tensor([256 / down_w, 256 / down_h])
    assert_close(prompts.points[:, 0], expected_points, width=2, name='points in the square frame')
    for r in range(len(prompts.boxes)):
        with torch.no_grad():
            out = sam2.model(image_embeddings=result.sam_image.embeddings,
                             input_points=prompts.points[r][None, None],
                             input_labels=prompts.point_labels[r][None, None].long(),
                             input_boxes=prompts.boxes[r][None, None],
                             input_masks=prompts.mask_inputs[prompts.mask_index[r]][None],
                             multimask_output=False)
        assert_close(result.low_res_logits[r], out.pred_masks[0, 0], depth=DEPTH, width=WIDTH, name='logits')
        assert_close(result.iou[r:r + 1], out.iou_scores[0, 0], depth=DEPTH, width=WIDTH, scale=1.0,
                     name='iou')
    merged = refiner.merge(result, probs, iou_thresh=0.0)
    assert merged.changed and merged.pred.shape == (48, 80)
    with pytest.raises(ValueError, match="mask_prompt_layout='batched'"):
        SAMRefiner(sam=sam2)  # Trident's unbatched mask is a segment-anything quirk


def test_square_region_prompts():
    from ovseg.models.proposals.coarse_regions import find_coarse_regions
    probs = torch.zeros(2, 40, 80)
    probs[0, :, :40], probs[1, :, 40:] = 1.0, 1.0
    regions = find_coarse_regions(probs.argmax(0), probs, 0.5, 1, 2)
    prompts = build_region_prompts(regions, (40, 80), 256, 64, 0.5, 1.0, square=True)
    assert prompts.mask_inputs.shape == (2, 1, 64, 64)
    assert (prompts.mask_inputs[0, 0, :, :30] > 0).all() and (prompts.mask_inputs[0, 0, :, 34:] == 0).all()
    assert prompts.boxes[:, 3].max() == pytest.approx(19 * 256 / 20)


def test_interactive_clicks_equal_transformers(sam2, processor, image):
    from ovseg.apis.interactive import InteractivePrompter
    segmentor = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'grass'])).eval()
    prompter = InteractivePrompter(segmentor, sam=sam2, clip_short_side=64)
    prompter.set_image(image)
    out = prompter(points=[[10, 20]])  # one positive click: best of three masks by predicted IoU
    expected = reference(sam2, processor, image, input_points=[[[[10, 20]]]], input_labels=[[[1]]])
    best = int(expected.iou_scores[0, 0].argmax())
    logits = processor.post_process_masks(expected.pred_masks, [[48, 80]], binarize=False)[0][0, best]
    tol = tolerance_for(logits, DEPTH, WIDTH)
    assert_equal_away_from_ties(out.masks[0], logits > 0, threshold_margin(logits, 0.0), tol, name='mask')
    assert out.class_probs.shape == (1, 3)


def test_local_folder_weights_and_offline_message(sam2, tmp_path, monkeypatch):
    folder = tmp_path / 'sam2_tiny'
    sam2.model.save_pretrained(folder)  # safetensors
    sam2.processor.save_pretrained(folder)
    loaded = SAM2Predictor(pretrained=str(folder))
    for (name, a), b in zip(sam2.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.processor.size == sam2.processor.size
    (folder / 'model.safetensors').unlink()
    torch.save(sam2.model.state_dict(), folder / 'pytorch_model.bin')
    with pytest.raises(OSError, match='safetensors'):  # pickled weights are never read
        SAM2Predictor(pretrained=str(folder))
    monkeypatch.setattr(hf_weights, 'hub_reachable', lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match='local folder saved with save_pretrained'):
        SAM2Predictor(pretrained='ovseg-tests/not-a-cached-sam2')
    with pytest.raises(ValueError, match='is a file'):
        SAM2Predictor(pretrained=str(folder / 'pytorch_model.bin'))
