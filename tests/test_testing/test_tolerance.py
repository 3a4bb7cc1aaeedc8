"""ovseg.testing.tolerance: the float32 bound, decisions away from ties, and that it still catches defects."""
import numpy as np
import pytest
import torch

from ovseg.testing import (EPS32, assert_close, assert_equal_away_from_ties, assert_same_order,
                           float32_tolerance, threshold_margin, tolerance_for, top2_margin)


def test_float32_tolerance_formula():
    z = np.sqrt(2 * np.log(2e4))  # one element, failure probability 1e-4
    assert float32_tolerance(3.0, depth=12, width=3584) == pytest.approx(z * (12 * 3584 / 6) ** 0.5 * EPS32 * 3)
    assert float32_tolerance(1.0, count=10 ** 5) == pytest.approx(np.sqrt(2 * np.log(2e9)) / 6 ** 0.5 * EPS32)
    with pytest.raises(ValueError, match='depth'):
        float32_tolerance(1.0, depth=0)
    three = np.sqrt(2 * np.log(6e4))  # three elements
    assert tolerance_for(np.array([-3.0, 1.0, np.nan]), depth=6) == pytest.approx(three * EPS32 * 3)
    assert tolerance_for(np.array([0.5]), scale=100, atol=1e-9) == pytest.approx(1e-9 + z / 6 ** 0.5 * 100 * EPS32)


def test_tolerance_holds_for_reordered_float32_sums():
    """The bound holds for what it models: float32 sums of many terms taken in two different orders."""
    gen = np.random.default_rng(0)
    terms = gen.normal(0, 1, (2000, 1024)).astype(np.float32)
    forward = terms.cumsum(axis=1, dtype=np.float32)[:, -1]  # sequential, one order
    backward = terms[:, ::-1].cumsum(axis=1, dtype=np.float32)[:, -1]  # sequential, the other order
    assert_close(forward, backward, width=1024)  # the scale: the largest sum


def test_assert_close_scales_with_magnitude_and_depth():
    gen = np.random.default_rng(0)
    expected = gen.normal(0, 1, 1000).astype(np.float32) * 3
    # A reduction-order change: relative noise of a few eps on every element passes.
    noisy = expected + (gen.normal(0, 4 * EPS32, expected.shape) * np.abs(expected).max()).astype(np.float32)
    assert assert_close(noisy, expected, depth=1, width=1024) > 0
    # A 1e-3 relative scale error (e.g. a wrong temperature) fails even at depth 24.
    with pytest.raises(AssertionError, match='differ by more than'):
        assert_close(expected * 1.001, expected, depth=24, width=4096)
    # Torch tensors (bf16 too) are accepted; NaN must coincide.
    assert_close(torch.tensor([1.0, float('nan')]), np.array([1.0, np.nan]))
    assert_close(np.float32(2.0), np.array(2.0))  # 0-d arrays
    with pytest.raises(AssertionError, match='NaN'):
        assert_close(np.array([1.0, 0.0]), np.array([1.0, np.nan]))
    with pytest.raises(AssertionError, match='shape'):
        assert_close(np.zeros(2), np.zeros(3))


def test_assert_close_where_skips_only_masked_elements():
    expected = np.array([1.0, 2.0, 3.0])
    actual = np.array([1.0, 2.5, 3.0])
    assert_close(actual, expected, where=np.array([True, False, True]))
    with pytest.raises(AssertionError):
        assert_close(actual, expected, where=np.array([True, True, False]))


def test_decisions_compared_exactly_away_from_ties():
    scores = np.array([0.1, 0.5 + 1e-7, 0.9, 0.3])
    expected = scores > 0.5
    flipped = expected.copy()
    flipped[1] = ~flipped[1]  # the score lies within the tolerance of the threshold
    near, differ = assert_equal_away_from_ties(flipped, expected, threshold_margin(scores, 0.5), tol=1e-6,
                                               max_near_fraction=1.0)
    assert (near, differ) == (1, 1)
    wrong = expected.copy()
    wrong[2] = ~wrong[2]  # far from the threshold: a real difference
    with pytest.raises(AssertionError, match='farther than'):
        assert_equal_away_from_ties(wrong, expected, threshold_margin(scores, 0.5), tol=1e-6,
                                    max_near_fraction=1.0)


def test_near_ties_are_bounded():
    scores = np.full(100, 0.5)
    labels = np.zeros(100, bool)
    with pytest.raises(AssertionError, match='near-tie elements differ'):
        assert_equal_away_from_ties(~labels, labels, threshold_margin(scores, 0.5), tol=1e-6,
                                    max_near_fraction=1.0)
    with pytest.raises(AssertionError, match='would say nothing'):
        assert_equal_away_from_ties(labels, labels, threshold_margin(scores, 0.5), tol=1e-6, max_near_fraction=0.5)
    # by default the share of near ties is counted, not bounded: the differing elements are
    assert assert_equal_away_from_ties(labels, labels, threshold_margin(scores, 0.5), tol=1e-6) == (100, 0)


def test_top2_margin_and_argmax():
    scores = np.array([[0.2, 0.5], [0.7, 0.5], [0.1 + 1e-9, 0.0]])  # (K=3, N=2)
    np.testing.assert_allclose(top2_margin(scores, axis=0), [0.5, 0.0])
    expected = scores.argmax(0)
    assert_equal_away_from_ties(np.array([1, 1]), expected, top2_margin(scores, 0), tol=1e-6,
                                max_near_fraction=1.0)
    with pytest.raises(AssertionError, match='farther than'):
        assert_equal_away_from_ties(np.array([2, 0]), expected, top2_margin(scores, 0), tol=1e-6,
                                    max_near_fraction=1.0)
    assert np.isinf(top2_margin(np.ones((1, 3)), axis=0)).all()


def test_same_order_allows_swaps_of_tied_neighbours_only():
    scores = np.array([0.9, 0.5, 0.5 - 1e-8, 0.1])
    expected = np.array([3, 1, 2, 0])
    assert_same_order(np.array([3, 2, 1, 0]), expected, scores, tol=1e-6)
    with pytest.raises(AssertionError):
        assert_same_order(np.array([1, 3, 2, 0]), expected, scores, tol=1e-6)
