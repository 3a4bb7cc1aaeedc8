"""OVSegInferencer.prompt: points and boxes -> SAM masks -> CLIP labels (tiny SAM, tiny CLIP)."""
import numpy as np
import pytest

from ovseg.apis import OVSegInferencer

TINY_SAM = dict(type='SAMPredictor', arch='tiny', image_size=256)


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


def _inferencer():
    from ovseg.testing import tiny_maskclip_cfg
    cfg = dict(model=tiny_maskclip_cfg(['cat', 'dog', 'grass']),
               test_pipeline=[dict(type='Resize', scale=(2048, 64), keep_ratio=True)])
    return OVSegInferencer(cfg, sam=TINY_SAM)


@pytest.fixture(scope='module')
def inferencer():
    return _inferencer()


def test_points_and_boxes_give_labelled_masks(inferencer, image):
    one = inferencer.prompt(image, points=[[10, 20], [60, 30]], point_labels=[1, 0])
    assert one['masks'].shape == (1, 48, 80) and one['masks'].dtype == bool
    assert one['label_names'][0] in ('cat', 'dog', 'grass')
    assert one['class_names'] == ['cat', 'dog', 'grass']
    np.testing.assert_allclose(one['class_probs'].sum(1), 1.0, rtol=1e-5)
    assert one['scores'][0] == pytest.approx(one['class_probs'][0].max())
    assert one['labels'][0] == one['class_probs'][0].argmax()
    assert one['overlay'] is None and one['mask_scores'].shape == (1,)

    boxes = inferencer.prompt(image, boxes=[[0, 0, 40, 30], [30, 10, 79, 47]],
                              return_overlay=True)
    assert boxes['masks'].shape == (2, 48, 80) and len(boxes['label_names']) == 2
    assert boxes['overlay'].shape == (48, 80, 3) and boxes['overlay'].dtype == np.uint8


def test_embedding_computed_once_per_image(inferencer, image):
    inferencer.prompt(image, points=[[5, 5]])
    calls = []
    encoder = inferencer._session.prompter.sam.model.image_encoder
    handle = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        inferencer.prompt(image.copy(), points=[[40, 20]])
        inferencer.prompt(image, boxes=[[0, 0, 20, 20]], vocabulary=['tree', 'sky'])
        assert not calls  # same pixels: the SAM embedding is reused
        inferencer.prompt(255 - image, points=[[40, 20]])
        assert len(calls) == 1  # new pixels: embedded again
    finally:
        handle.remove()


def test_call_vocabulary_applies_to_one_call(inferencer, image):
    result = inferencer.prompt(image, points=[[10, 10]], vocabulary=['tree', 'sky'])
    assert set(result['label_names']) <= {'tree', 'sky'} and result['class_probs'].shape == (1, 2)
    again = inferencer.prompt(image, points=[[10, 10]])
    assert again['class_names'] == ['cat', 'dog', 'grass']
    assert inferencer(image)['class_names'] == ['cat', 'dog', 'grass']


@pytest.mark.parametrize('kwargs,message', [
    (dict(), 'at least one point'),
    (dict(points=[[100, 10]]), 'outside'),
    (dict(boxes=[[10, 10, 10, 20]]), 'is empty'),
    (dict(points=[[1, 1]], point_labels=[2]), 'point_labels'),
])
def test_bad_prompts_are_refused(inferencer, image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        inferencer.prompt(image, **kwargs)


def test_without_sam_the_error_says_how(image):
    from ovseg.testing import tiny_maskclip_cfg
    plain = OVSegInferencer(tiny_maskclip_cfg(['cat']))
    with pytest.raises(RuntimeError, match="sam=dict"):
        plain.prompt(image, points=[[1, 1]])
    plain.set_sam(TINY_SAM)
    assert plain.prompt(image, points=[[1, 1]])['masks'].shape == (1, 48, 80)
