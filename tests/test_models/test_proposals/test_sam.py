"""SAMPredictor: builders, weights-only checkpoints, one embedding per image, batched prompts."""
import numpy as np
import pytest
import torch

from ovseg.models.proposals import SAM_ARCHS, SAMPredictor, build_sam_model
from ovseg.registry import MODELS


@pytest.fixture(scope='module')
def sam():
    torch.manual_seed(0)
    return SAMPredictor(arch='tiny', image_size=256)


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.mark.parametrize('arch', ['vit_b', 'vit_l', 'vit_h'])
def test_builders_match_segment_anything(arch):
    from segment_anything import sam_model_registry
    with torch.device('meta'):  # shapes only: no memory, no weights
        ours = build_sam_model(arch)
        theirs = sam_model_registry[arch]()
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}


def test_registered_and_frozen(sam):
    assert MODELS.get('SAMPredictor') is SAMPredictor
    assert set(SAM_ARCHS) == {'vit_b', 'vit_l', 'vit_h', 'tiny'}
    assert not any(p.requires_grad for p in sam.parameters())
    assert sam.mask_input_size == (64, 64)
    with pytest.raises(ValueError, match='Unknown SAM arch'):
        build_sam_model('vit_x')


def test_checkpoint_round_trip_and_key_errors(sam, tmp_path):
    official = tmp_path / 'sam_tiny.pth'
    torch.save(sam.model.state_dict(), official)  # official files hold Sam's own names
    loaded = SAMPredictor(arch='tiny', image_size=256, checkpoint=str(official))
    for (name, a), b in zip(sam.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    prefixed = tmp_path / 'wrapper.pth'
    torch.save({'state_dict': sam.state_dict()}, prefixed)  # 'model.' prefix and a wrapper dict
    SAMPredictor(arch='tiny', image_size=256, checkpoint=str(prefixed))

    state = dict(sam.model.state_dict())
    state['mask_decoder.extra.weight'] = state.pop('mask_decoder.iou_token.weight')
    torch.save(state, tmp_path / 'renamed.pth')
    with pytest.raises(KeyError, match=r"missing keys \['mask_decoder\.iou_token\.weight'\].*"
                                       r"unexpected keys \['mask_decoder\.extra\.weight'\]"):
        SAMPredictor(arch='tiny', image_size=256, checkpoint=str(tmp_path / 'renamed.pth'))
    lenient = SAMPredictor(arch='tiny', image_size=256)
    missing, unexpected = lenient.load_checkpoint(str(tmp_path / 'renamed.pth'), strict=False)
    assert missing == ['mask_decoder.iou_token.weight'] and unexpected == ['mask_decoder.extra.weight']


def test_checkpoint_is_read_weights_only(tmp_path):
    torch.save({'model': {'w': torch.zeros(1)}, 'extra': np.float64(1.0)}, tmp_path / 'unsafe.pth')
    with pytest.raises(RuntimeError, match='weights_only=True'):
        SAMPredictor(arch='tiny', image_size=256, checkpoint=str(tmp_path / 'unsafe.pth'))


def test_matches_segment_anything_predictor(sam, image):
    from segment_anything import SamPredictor
    stock = SamPredictor(sam.model)
    stock.set_image(image)
    ours = sam.embed_image(image)
    assert torch.equal(ours.embedding, stock.features)
    assert ours.original_size == (48, 80) and ours.input_size == stock.input_size
    points, labels = np.array([[10.0, 20.0], [60.0, 5.0]]), np.array([1, 0])
    box = np.array([5.0, 4.0, 70.0, 40.0])
    mask = torch.randn(1, 1, 64, 64)
    _, iou, low = stock.predict_torch(
        torch.as_tensor(stock.transform.apply_coords(points, image.shape[:2]))[None],
        torch.as_tensor(labels)[None],
        torch.as_tensor(stock.transform.apply_boxes(box[None], image.shape[:2]), dtype=torch.float), mask,
        multimask_output=True)
    out = sam.predict(ours, points[None], labels[None], box[None], mask)
    torch.testing.assert_close(out.iou, iou, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.low_res_logits, low, atol=1e-5, rtol=0)
    full = sam.upsample(out.low_res_logits, ours)
    assert full.shape == (1, 3, 48, 80)


def test_embedding_computed_once_and_batches_agree(sam, image):
    calls = []
    handle = sam.model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        state = sam.embed_image(torch.from_numpy(image))
        pts = torch.tensor([[[x, y]] for x in (5.0, 30.0, 75.0) for y in (3.0, 24.0, 45.0)])
        labels = torch.ones(9, 1)
        one = sam.predict(state, pts, labels, multimask_output=False, batch_size=64)
        many = sam.predict(state, pts, labels, multimask_output=False, batch_size=2)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert one.low_res_logits.shape == (9, 1, 64, 64) and one.iou.shape == (9, 1)
    torch.testing.assert_close(one.low_res_logits, many.low_res_logits, atol=1e-5, rtol=0)


def test_bad_prompts_are_reported(sam, image):
    state = sam.embed_image(image)
    with pytest.raises(ValueError, match='at least one prompt'):
        sam.predict(state)
    with pytest.raises(ValueError, match=r'lies outside the 80x48'):
        sam.predict(state, [[[81.0, 10.0]]], [[1]])
    with pytest.raises(ValueError, match='point_labels must be'):
        sam.predict(state, [[[1.0, 1.0]]], [1, 1])
    with pytest.raises(ValueError, match=r'Box \[10.0, 10.0, 10.0, 30.0\] \(prompt 0\) is empty'):
        sam.predict(state, boxes=[[10.0, 10.0, 10.0, 30.0]])
    with pytest.raises(ValueError, match='is empty inside'):
        sam.predict(state, boxes=[[90.0, 0.0, 120.0, 30.0]])  # entirely right of the image
    with pytest.raises(ValueError, match='an .H, W, 3. uint8 RGB image'):
        sam.embed_image(image.astype(np.float32))
    clipped = sam.predict(state, boxes=[[-5.0, -5.0, 200.0, 30.0]])  # partly outside: clipped
    assert clipped.iou.shape == (1, 3)
