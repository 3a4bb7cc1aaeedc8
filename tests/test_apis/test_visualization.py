"""Palette, blending and legend drawing."""
import numpy as np
import pytest

from ovseg.apis import blend_mask, class_palette, draw_overlay


def test_palette_is_distinct_and_deterministic():
    palette = class_palette(150)
    assert palette.shape == (150, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 150
    np.testing.assert_array_equal(palette[:5], class_palette(5))


def test_blend_mask_weights():
    image = np.full((2, 2, 3), 100, np.uint8)
    palette = np.array([[0, 0, 0], [200, 200, 200]], np.uint8)
    out = blend_mask(image, np.array([[0, 1], [1, 0]]), palette, alpha=0.5)
    assert out[0, 0, 0] == 50 and out[0, 1, 0] == 150
    with pytest.raises(ValueError, match='alpha'):
        blend_mask(image, np.zeros((2, 2), np.int64), palette, alpha=2.0)


@pytest.mark.parametrize('size', [(8, 9), (300, 200)])
def test_overlay_with_legend(size):
    height, width = size
    image = np.full((height, width, 3), 255, np.uint8)
    mask = np.zeros(size, np.int64)
    mask[:, width // 2:] = 1
    names = [f'class {i}' for i in range(40)]
    shares = {name: 0.0 for name in names}
    shares.update({'class 0': 0.5, 'class 1': 0.5})
    overlay = draw_overlay(image, mask, names, shares)
    assert overlay.shape == (height, width, 3) and overlay.dtype == np.uint8
    assert not np.shares_memory(overlay, image) and (image == 255).all()
    if height >= 100:  # the legend darkens the top-left corner only
        assert overlay[:5, :5].mean() < overlay[-5:, :5].mean()
    with pytest.raises(ValueError, match='sizes differ'):
        draw_overlay(image, mask[:-1], names, shares)
