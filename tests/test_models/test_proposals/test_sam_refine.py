"""SAMRefiner on a tiny SAM: regions, merge rules, what changes, the OVSegmentor hook."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.postprocessors import RefineResult, SAMRefiner, merge_refinement, packing_scores
from ovseg.models.proposals import find_coarse_regions
from ovseg.models.utils.input_images import images_from_inputs
from ovseg.registry import MODELS
from ovseg.testing import tiny_maskclip_cfg

TINY_SAM = dict(type='SAMPredictor', arch='tiny', image_size=256)


def blob_probs(height=64, width=96):
    """Three classes: 0 everywhere, 1 in a square, 2 in a disc; softmax of scaled indicator maps."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    square = ((yy >= 8) & (yy < 40) & (xx >= 8) & (xx < 40)).float()
    disc = (((yy - 40) ** 2 + (xx - 70) ** 2) < 18 ** 2).float()
    logits = torch.stack([torch.full_like(square, 0.5), 2 * square, 2 * disc])
    return logits.softmax(dim=0)


@pytest.fixture(scope='module')
def refiner():
    torch.manual_seed(0)
    return SAMRefiner(sam=TINY_SAM, coarse_thresh=0.1, minimal_area=20, iou_thresh=-1e9).eval()


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)


def test_regions_boxes_points_and_area_filter():
    probs = blob_probs()
    regions = find_coarse_regions(probs.argmax(0), probs, coarse_thresh=0.1, minimal_area=20)
    assert regions.classes.tolist() == [0, 1, 2]
    assert regions.boxes[1].tolist() == [4.0, 4.0, 19.0, 19.0]  # the square at half resolution
    x, y = regions.points[1].tolist()
    assert 4 <= x <= 19 and 4 <= y <= 19
    assert regions.index_map.shape == (3, 32, 48) and int(regions.index_map[1].max()) == 1
    assert (regions.masks()[1] == (regions.index_map[1] == 1)).all()
    big = find_coarse_regions(probs.argmax(0), probs, coarse_thresh=0.1, minimal_area=257)
    assert 1 not in big.classes.tolist()  # the 16x16 square is below the area


def test_no_regions_returns_inputs_without_running_sam(refiner, image):
    probs = torch.full((3, 64, 96), 1 / 3)
    calls = []
    handle = refiner.sam.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        result = SAMRefiner(sam=refiner.sam, coarse_thresh=0.5).refine(image, probs)
    finally:
        handle.remove()
    assert not result.changed and not calls and len(result.regions) == 0
    assert result.logits is not None and torch.equal(result.pred, probs.argmax(0))
    assert packing_scores(result, probs) is probs


def test_nothing_kept_leaves_the_map_unchanged(refiner, image):
    probs = blob_probs()
    result = refiner.merge(refiner.prompt_regions(image, probs), probs, iou_thresh=1e9)
    assert not result.changed and torch.equal(result.logits, probs)
    assert result.keep is not None and not result.keep.any()


def test_refinement_changes_only_pixels_under_kept_masks(refiner, image):
    probs = blob_probs()
    first = refiner.prompt_regions(image, probs)
    result = refiner.merge(first, probs)
    assert result.changed and result.keep.all()
    covered = (refiner.sam.upsample(first.low_res_logits, first.sam_image)[:, 0] > 0).any(0)
    assert torch.equal(result.pred[~covered], probs.argmax(0)[~covered])
    assert (result.logits[:, ~covered] == 0).all()
    covering = refiner.sam.upsample(first.low_res_logits, first.sam_image)[:, 0] > 0
    classes = first.regions.classes
    for cls in range(3):  # a pixel takes only a class one of whose masks covers it
        taken = (result.pred == cls) & covered
        assert covering[classes == cls].any(0)[taken].all()
    scores = packing_scores(result, probs)
    assert torch.equal(scores.argmax(0), result.pred)


def test_merge_rules_on_synthetic_masks():
    probs = torch.tensor([[0.7, 0.7, 0.9], [0.3, 0.3, 0.1]])[:, None, :].repeat(1, 2, 1)  # (2, 2, 3)
    seg_pred = probs.argmax(0)
    mask_logits = torch.tensor([[[4.0, -4.0, 4.0]] * 2])  # one class-1 mask over columns 0 and 2
    failed = torch.tensor([[False, False, True]] * 2)  # a rejected region over column 2
    pred, logits, stage1 = merge_refinement(mask_logits, torch.tensor([1]), probs, seg_pred, failed,
                                            failed_rule='reference')
    sig = torch.sigmoid(torch.tensor(4.0))
    assert torch.allclose(stage1[1, 0], torch.tensor([0.3 * sig, 0.0, 0.1 * sig]))
    assert torch.allclose(logits[:, 0, 2], torch.tensor([0.9, 0.1]))  # raised to the input inside
    assert pred[0].tolist() == [1, 0, 1]  # column 1 uncovered: input; column 2: stage 1 (the quirk)
    fixed, fixed_logits, _ = merge_refinement(mask_logits, torch.tensor([1]), probs, seg_pred, failed)
    assert fixed[0].tolist() == [1, 0, 0]  # 0.9 beats 0.1 * sigmoid(4): the input's class
    assert torch.equal(fixed_logits, logits)
    for rule, expected in (('reference', pred), ('max_prob', fixed)):
        result = RefineResult(pred=expected, logits=logits, changed=True, regions=None, stage1_logits=stage1)
        assert torch.equal(packing_scores(result, probs).argmax(0), expected), rule
    with pytest.raises(ValueError, match='failed_rule'):
        merge_refinement(mask_logits, torch.tensor([1]), probs, seg_pred, failed, failed_rule='x')


def test_bad_inputs_are_reported(refiner, image):
    with pytest.raises(ValueError, match='same size'):
        refiner.refine(image[:32], blob_probs())
    with pytest.raises(ValueError, match='too small'):
        find_coarse_regions(torch.zeros(1, 1, dtype=torch.long), torch.ones(1, 1, 1))
    with pytest.raises(ValueError, match='failed_rule'):
        SAMRefiner(sam=refiner.sam, failed_rule='bogus')


def test_images_from_inputs_undoes_the_preprocessor():
    from mmseg.models import SegDataPreProcessor
    pre = SegDataPreProcessor(mean=[1.0, 2.0, 3.0], std=[50.0, 60.0, 70.0], bgr_to_rgb=True)
    bgr = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    inputs = pre(dict(inputs=[bgr]))['inputs']
    rgb = images_from_inputs(inputs, pre)
    assert torch.equal(rgb[0], bgr.flip(0).permute(1, 2, 0))


def test_ovsegmentor_hook_refines_before_packing():
    """resolution='input': refinement on the network input, then the usual packing."""
    from mmseg.structures import SegDataSample
    refiner = dict(type='SAMRefiner', sam=TINY_SAM, coarse_thresh=0.0, minimal_area=4, iou_thresh=-1e9,
                   resolution='input')
    cfg = tiny_maskclip_cfg(['cat', 'dog'], sam_refiner=refiner)
    model = MODELS.build(cfg).eval()
    inputs = torch.randn(1, 3, 64, 64)
    sample = SegDataSample(metainfo=dict(img_shape=(56, 64), ori_shape=(112, 128)))
    out = model.predict(inputs, [sample])[0]
    assert out.seg_logits.data.shape == (2, 112, 128) and out.pred_sem_seg.data.shape == (1, 112, 128)
    probs = model.inference(inputs)[0, :, :56, :64]
    image = images_from_inputs(inputs, model.data_preprocessor)[0, :56, :64]
    refined = model.sam_refiner.refine(image, probs)
    expected = F.interpolate(packing_scores(refined, probs)[None], (112, 128), mode='bilinear')[0]
    torch.testing.assert_close(out.seg_logits.data, expected)


def test_batched_mask_prompt_layout_runs_and_differs(refiner, image):
    probs = blob_probs()
    batched = SAMRefiner(sam=refiner.sam, coarse_thresh=0.1, minimal_area=20, iou_thresh=-1e9,
                         mask_prompt_layout='batched').prompt_regions(image, probs)
    trident = refiner.prompt_regions(image, probs)
    assert batched.iou.shape == trident.iou.shape and not torch.equal(batched.iou, trident.iou)
    with pytest.raises(ValueError, match='mask_prompt_layout'):
        SAMRefiner(sam=refiner.sam, mask_prompt_layout='rows')


def test_sam_input_rounds_up_to_16_with_opencv_bilinear(refiner):
    """Trident gives SAM the image resized (cv2.resize, INTER_LINEAR) to sides rounded up to 16."""
    import cv2
    image = np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    rounded = refiner.sam_input(image)
    assert rounded.shape == (80, 96, 3)
    np.testing.assert_array_equal(rounded, cv2.resize(image, (96, 80), interpolation=cv2.INTER_LINEAR))
    same = np.zeros((64, 96, 3), np.uint8)
    assert refiner.sam_input(same) is same or np.array_equal(refiner.sam_input(same), same)


def test_original_resolution_refines_the_image_file(tmp_path):
    """resolution='original' (Trident): the probabilities are resized to the original size and refined
    there, SAM embeds the file's image rounded up to 16 (70 x 90 -> 80 x 96), its masks are resized back
    to 70 x 90, and regions are found at half the original size."""
    import cv2
    from mmseg.structures import SegDataSample
    refiner = dict(type='SAMRefiner', sam=TINY_SAM, coarse_thresh=0.0, minimal_area=4, iou_thresh=-1e9)
    model = MODELS.build(tiny_maskclip_cfg(['cat', 'dog'], sam_refiner=refiner)).eval()
    assert (model.sam_refiner.resolution, model.sam_refiner.failed_rule) == ('original', 'reference')
    original = np.random.default_rng(4).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    path = tmp_path / 'img.png'
    cv2.imwrite(str(path), original[..., ::-1])  # BGR on disk
    inputs = torch.randn(1, 3, 64, 64)
    sample = SegDataSample(metainfo=dict(img_shape=(56, 64), ori_shape=(70, 90), img_path=str(path)))
    seen = []
    handle = model.sam_refiner.sam.model.image_encoder.register_forward_pre_hook(
        lambda module, args: seen.append(tuple(args[0].shape)))
    try:
        out = model.predict(inputs, [sample])[0]
    finally:
        handle.remove()
    probs = F.interpolate(model.inference(inputs)[:, :, :56, :64], (70, 90), mode='bilinear')[0]
    result = model.sam_refiner.refine(original, probs)
    assert result.regions.down_size == (35, 45) and result.sam_image.original_size == (80, 96)
    assert seen and seen[0][-2:] == (256, 256)  # SAM's padded square input (tiny SAM: 256)
    torch.testing.assert_close(out.seg_logits.data, packing_scores(result, probs))
    assert torch.equal(out.pred_sem_seg.data[0], result.pred)
    with pytest.raises(ValueError, match='original image'):
        model.predict(inputs, [SegDataSample(metainfo=dict(img_shape=(56, 64), ori_shape=(70, 90)))])


def test_inferencer_gives_the_original_image_to_the_refiner():
    """OVSegInferencer hands in-memory images to an original-resolution refiner (metainfo ori_img)."""
    from ovseg.apis import OVSegInferencer
    refiner = dict(type='SAMRefiner', sam=TINY_SAM, coarse_thresh=0.0, minimal_area=4, iou_thresh=-1e9)
    cfg = dict(model=tiny_maskclip_cfg(['cat', 'dog'], sam_refiner=refiner),
               test_pipeline=[dict(type='Resize', scale=(64, 64), keep_ratio=True)])
    inferencer = OVSegInferencer(cfg)
    image = np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    out = inferencer(image)
    assert out['mask'].shape == (70, 90) and out['logits'].shape == (2, 70, 90)
