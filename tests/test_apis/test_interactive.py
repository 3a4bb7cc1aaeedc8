"""InteractivePrompter: points and boxes -> SAM masks -> CLIP labels, on a tiny SAM and a tiny CLIP."""
import numpy as np
import pytest
import torch

from ovseg.apis.interactive import InteractivePrompter
from ovseg.registry import MODELS
from ovseg.testing import tiny_maskclip_cfg


@pytest.fixture(scope='module')
def prompter():
    segmentor = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'grass'])).eval()
    prompter = InteractivePrompter(segmentor, sam=dict(type='SAMPredictor', arch='tiny', image_size=256),
                                   clip_short_side=64)
    prompter.set_image(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    return prompter


def test_requires_an_image():
    segmentor = MODELS.build(tiny_maskclip_cfg(['cat'])).eval()
    with pytest.raises(RuntimeError, match='set_image'):
        InteractivePrompter(segmentor, sam=dict(type='SAMPredictor', arch='tiny', image_size=256))(
            points=[[1, 1]])


def test_points_give_one_labelled_mask(prompter):
    calls = []
    handle = prompter.sam.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        one = prompter(points=[[10, 20]])
        two = prompter(points=[[10, 20], [60, 30]], point_labels=[1, 0])
    finally:
        handle.remove()
    assert not calls  # the embedding from set_image is reused
    for result in (one, two):
        assert result.masks.shape == (1, 48, 80) and result.masks.dtype == torch.bool
        assert result.label_names[0] in ('cat', 'dog', 'grass')
        assert result.class_probs.shape == (1, 3)
        torch.testing.assert_close(result.class_probs.sum(1), torch.ones(1))
        assert result.low_res_logits.shape == (1, 1, 64, 64)
    refined = prompter(points=[[10, 20]], mask_input=one.low_res_logits)
    assert refined.masks.shape == (1, 48, 80)


def test_boxes_give_one_mask_each_and_vocabulary_switches(prompter):
    result = prompter(boxes=[[0, 0, 40, 30], [30, 10, 79, 47]], vocabulary=['tree', 'sky'])
    assert result.masks.shape == (2, 48, 80) and result.class_probs.shape == (2, 2)
    assert set(result.label_names) <= {'tree', 'sky'}
    combined = prompter(points=[[10, 10]], boxes=[[0, 0, 40, 30]])
    assert combined.masks.shape == (1, 48, 80)
    prompter.segmentor.set_vocabulary(['cat', 'dog', 'grass'])


@pytest.mark.parametrize('kwargs,message', [
    (dict(), 'at least one point'),
    (dict(points=[[100, 10]]), 'outside the 80x48'),
    (dict(points=[[-1, 10]]), 'outside'),
    (dict(boxes=[[10, 10, 10, 20]]), 'is empty'),
    (dict(boxes=[[90, 0, 120, 20]]), 'is empty'),
    (dict(points=[[5, 5]], point_labels=[2]), 'point_labels'),
    (dict(points=[[5, 5], [6, 6]], point_labels=[1]), 'point_labels'),
    (dict(points=[[5, 5]], boxes=[[0, 0, 10, 10], [5, 5, 20, 20]]), 'at most one box'),
])
def test_bad_prompts_are_reported(prompter, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prompter(**kwargs)
