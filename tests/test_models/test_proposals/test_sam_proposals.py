"""Shared-image mask decoding and automatic proposals: identical to segment-anything's on a tiny SAM."""
import numpy as np
import pytest
import torch

from ovseg.models.proposals import SAMAutomaticProposals, SAMPredictor
from ovseg.models.proposals.shared_decoder import decode_masks, decode_tokens
from ovseg.testing.sam_hf import spread_weights


@pytest.fixture(scope='module')
def sam():
    return spread_weights(SAMPredictor(arch='tiny', image_size=256))


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def state(sam, image):
    return sam.embed_image(image)


def _prompts(sam, num=12, boxes=False):
    gen = torch.Generator().manual_seed(1)
    points = torch.rand(num, 2, 2, generator=gen, dtype=torch.float64) * 256
    labels = torch.tensor([[1, 0]] * num)
    box = torch.sort(torch.rand(num, 2, 2, generator=gen) * 256, dim=1).values.flatten(1) if boxes else None
    return sam.model.prompt_encoder((points, labels), box, None)


@pytest.mark.parametrize('multimask,boxes,with_mask', [(True, False, False), (False, True, False),
                                                       (True, True, True)])
def test_shared_decoder_is_bit_identical(sam, state, multimask, boxes, with_mask):
    sparse, dense = _prompts(sam, boxes=boxes)
    if with_mask:
        dense = sam.encode_masks(torch.randn(1, 1, 64, 64)).expand(len(sparse), -1, -1, -1)
    pe = sam.model.prompt_encoder.get_dense_pe()
    logits, iou = sam.model.mask_decoder(state.embedding, pe, sparse, dense, multimask)
    decoded = decode_tokens(sam.model.mask_decoder, state.embedding, pe, sparse, dense[:1])
    keep = slice(1, None) if multimask else slice(0, 1)
    assert torch.equal(decoded.iou[:, keep], iou)
    assert torch.equal(decode_masks(sam.model.mask_decoder, decoded)[:, keep], logits)
    rows = torch.tensor([0, 5, 11])
    assert torch.equal(decode_masks(sam.model.mask_decoder, decoded, rows)[:, keep], logits[rows])


def test_predictor_decode_uses_the_shared_path_identically(sam, state):
    pts = torch.tensor([[[10.0, 10.0]], [[40.0, 30.0]], [[70.0, 5.0]]])
    shared = sam.predict(state, pts, torch.ones(3, 1))
    coords = sam.to_input_frame(pts, state.original_size)
    stock = sam.decode(state, coords, torch.ones(3, 1), share_image=False)
    assert torch.equal(shared.low_res_logits, stock.low_res_logits) and torch.equal(shared.iou, stock.iou)


@pytest.mark.parametrize('settings', [
    dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),  # every mask reaches NMS
    dict(pred_iou_thresh=0.1, stability_score_thresh=0.0),  # some points skip the upscaling
    dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=30),
])
def test_automatic_proposals_equal_the_stock_generator(sam, image, settings):
    from segment_anything import SamAutomaticMaskGenerator
    stock = SamAutomaticMaskGenerator(sam.model, points_per_side=6, points_per_batch=16, **settings)
    expected = stock.generate(image)
    proposals = SAMAutomaticProposals(sam=sam, points_per_side=6, points_per_batch=16, **settings)(image)
    ours = proposals.to_records()
    assert len(ours) == len(expected) > 0
    for a, b in zip(expected, ours):
        assert np.array_equal(a['segmentation'], b['segmentation'])
        assert a['bbox'] == b['bbox'] and a['area'] == b['area'] and a['point_coords'] == b['point_coords']
        assert a['predicted_iou'] == b['predicted_iou'] and a['stability_score'] == b['stability_score']
    assert proposals.masks.shape == (len(ours), 48, 80) and proposals.masks.dtype == torch.bool


def test_automatic_proposals_reuse_an_embedding_and_handle_no_masks(sam, image, state):
    calls = []
    handle = sam.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = SAMAutomaticProposals(sam=sam, points_per_side=4, pred_iou_thresh=0.999)(image, sam_image=state)
    finally:
        handle.remove()
    assert not calls and len(out) == 0 and out.masks.shape == (0, 48, 80)
    with pytest.raises(ValueError, match='positive'):
        SAMAutomaticProposals(sam=sam, points_per_side=0)


def test_bit_packing_round_trip():
    from ovseg.models.proposals.automatic import pack_masks, unpack_masks
    masks = torch.rand(3, 5, 13, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = pack_masks(masks)
    assert np.array_equal(packed.numpy(), np.packbits(masks.numpy(), axis=-1))
    assert torch.equal(unpack_masks(packed, 13), masks)
    assert unpack_masks(pack_masks(masks[:0]), 13).shape == (0, 5, 13)
