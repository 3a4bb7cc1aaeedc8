"""One tolerance policy for parity tests: float32 error analysis instead of one run's observed error.

**Float arrays** (:func:`assert_close`). Two float32 implementations of the same formula differ by the
rounding of their reductions, whose order changes with the library version (BLAS blocking, vectorised
kernels, thread count). The tolerance is a statistical bound on that difference:

* a rounding moves a result by at most ``eps/2`` of its magnitude (``eps = 2**-23`` for float32), evenly
  spread: variance ``eps**2 / 12``;
* a computation of ``depth`` stages (transformer blocks with LayerNorm and residuals, conv stages, decoder
  layers) whose longest reductions have ``width`` terms makes ``n = depth * width`` roundings on the way
  to each output. They are independent, so they add in quadrature (a random walk; the worst case, ``n``
  times larger, needs adversarial data), and two evaluations in different orders differ with standard
  deviation ``sigma = sqrt(n / 6) * eps * scale``;
* the error is relative to the *scale of the computation*, not of each element: an output element near
  zero is a sum of terms of the array's typical size and inherits their absolute error. The scale is
  ``max|expected|`` unless the caller states it (e.g. 1 for cosines of unit vectors, or the slope of a
  sigmoid times the size of its argument's inputs); linear stages carry a relative error on unchanged;
* an array of ``N`` compared elements stays within ``z * sigma`` everywhere, ``z = sqrt(2 ln(2 N / delta))``,
  except with probability ``delta = 1e-4`` (a union bound on Gaussian tails): z = 4.4 for one number,
  6.2 for 1e5 elements.

So ``|actual - expected| <= atol + z(N) * sqrt(depth * width / 6) * eps * scale`` elementwise, where ``atol`` is
only for a stated extra source (a float16 rounding step, a float64 reference). Example: 12 ViT blocks of
width 896 (MLP 3584), 1e5 tokens up to |3|: tolerance 6.6 * 84.5 * 1.19e-7 * 3 = 2.0e-4, 20x the 1e-5
change that a newer torch release produced, and far below what a real defect causes (a wrong
temperature, a swapped operation or an off-by-one resize move values by 1e-3 to 1 of their scale; each
parity test shows one such defect failing). NaN must be NaN in both arrays.

**Decisions** (:func:`assert_equal_away_from_ties`). A mask, label map, kept/dropped flag or order is a
thresholded function of a float score. It is compared exactly wherever its score is farther than the
score's own tolerance from the threshold (or from the runner-up, for an argmax: :func:`top2_margin`).
Elements within that tolerance ("near ties") may differ, and the number that do is bounded (a handful,
``max_flips``): a wrong result cannot pass as a tie. The share of near ties is counted and returned; it is
bounded (``max_near_fraction``) only where the inputs guarantee few, since flat random-weight scores make it
depend on the fixture, not on the implementation. Integer prompts, indices and counts are compared with
``numpy.testing.assert_array_equal``.
"""
import math

import numpy as np
import torch

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: relative spacing of float32 numbers near 1
EPS64 = float(np.finfo(np.float64).eps)
FAILURE_PROBABILITY = 1e-4  # delta: chance that a correct implementation exceeds the tolerance somewhere


def _numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    return np.asarray(x)


def float32_tolerance(scale, depth=1, width=1, eps=EPS32, count=1):
    """Absolute tolerance ``z(count) * sqrt(depth * width / 6) * eps * scale`` (module docstring: why).

    Args:
        scale (float): magnitude of the computation's values (usually ``max|expected|``).
        depth (int): stages whose errors add (blocks, layers, sequential reductions). Default 1.
        width (int): length of the longest reduction in a stage (channels, MLP width, summed pixels).
        eps (float): machine epsilon of the arithmetic (``EPS32``; ``EPS64`` for float64 code).
        count (int): number of elements compared (sets z). Default 1.
    """
    if depth < 1 or width < 1:
        raise ValueError(f'depth and width must be >= 1, got depth={depth}, width={width}')
    z = math.sqrt(2 * math.log(2 * max(int(count), 1) / FAILURE_PROBABILITY))
    return z * math.sqrt(depth * width / 6) * eps * float(scale)


def tolerance_for(expected, depth=1, width=1, scale=None, atol=0.0, eps=EPS32, count=None):
    """The absolute tolerance :func:`assert_close` applies to ``expected`` (``count`` defaults to its size)."""
    expected = _numpy(expected)
    if scale is None:
        finite = np.abs(expected[np.isfinite(expected)]) if expected.size else np.zeros(0)
        scale = float(finite.max()) if finite.size else 0.0
    count = expected.size if count is None else count
    return atol + float32_tolerance(scale, depth, width, eps, count)


def assert_close(actual, expected, *, depth=1, width=1, scale=None, atol=0.0, eps=EPS32, where=None,
                 name='array'):
    """Assert ``|actual - expected| <= atol + sqrt(depth * width) * eps * scale`` elementwise.

    Args:
        actual, expected: arrays or tensors of the same shape (NaN must coincide).
        depth, width, eps: the float error model (:func:`float32_tolerance`).
        scale (float, optional): magnitude of the computation; default ``max|expected|`` over finite values.
        atol (float): extra absolute tolerance for a stated source (default 0).
        where (array of bool, optional): compare only these elements (broadcast to the shape), e.g. away
            from the near ties of a decision the values depend on; the scale still comes from all of them.
        name (str): named in the failure message.

    Returns:
        float: the tolerance used (for the caller's own reporting).
    """
    actual, expected = _numpy(actual), _numpy(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f'{name}: shape {actual.shape} != expected {expected.shape}')
    count = None if where is None else int(np.broadcast_to(_numpy(where).astype(bool), expected.shape).sum())
    tol = tolerance_for(expected, depth, width, scale, atol, eps, count)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_a, nan_e):
        raise AssertionError(f'{name}: NaN at {int((nan_a != nan_e).sum())} positions of one array only')
    diff = np.where(nan_a, 0.0, np.abs(actual.astype(np.float64) - expected.astype(np.float64)))
    if where is not None:
        diff = np.where(np.broadcast_to(_numpy(where).astype(bool), diff.shape), diff, 0)
    worst = float(diff.max()) if diff.size else 0.0
    if not worst <= tol:
        over = int((diff > tol).sum())
        where = np.unravel_index(int(diff.argmax()), diff.shape)
        raise AssertionError(f'{name}: {over} of {diff.size} elements differ by more than {tol:.3g} '
                             f'(depth={depth}, width={width}); worst {worst:.3g} at {tuple(map(int, where))} '
                             f'(actual {actual[where]!r}, expected {expected[where]!r})')
    return tol


def top2_margin(scores, axis=0):
    """Gap between the largest and the second-largest score along ``axis`` (0 where tied)."""
    scores = _numpy(scores).astype(np.float64)
    if scores.shape[axis] < 2:
        return np.full(np.delete(scores.shape, axis), np.inf)
    part = -np.partition(-scores, 1, axis=axis)
    return np.take(part, 0, axis=axis) - np.take(part, 1, axis=axis)


def threshold_margin(scores, threshold):
    """Distance of each score from a decision threshold."""
    return np.abs(_numpy(scores).astype(np.float64) - threshold)


def assert_equal_away_from_ties(actual, expected, margin, tol, *, max_flips=10, max_near_fraction=1.0,
                                name='decision'):
    """Assert a thresholded output equals the expected one wherever its score is not a near tie.

    Args:
        actual, expected: discrete arrays (masks, labels, flags) of one shape.
        margin: distance of the deciding score from its threshold or runner-up, broadcastable to that
            shape (:func:`top2_margin`, :func:`threshold_margin`), computed from the expected scores.
        tol (float): the score's own tolerance (from :func:`tolerance_for` of the score).
        max_flips (int): most elements allowed to differ, all of them near ties. Default 10. This is what
            keeps a wrong result from passing as "near ties", however many near ties there are.
        max_near_fraction (float): most near ties allowed, as a fraction of the elements (beyond it the
            comparison would say little). Default 1.0 (not bounded): the share of near ties depends on the
            inputs (flat random-weight scores give many), not on the implementation, so a bound would fail
            on other fixtures of the same format; set one only where the inputs guarantee it.
        name (str): named in the failure message.

    Returns:
        tuple[int, int]: (near ties, elements that differ).
    """
    actual, expected = _numpy(actual), _numpy(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f'{name}: shape {actual.shape} != expected {expected.shape}')
    near = np.broadcast_to(_numpy(margin) <= tol, actual.shape)
    differ = actual != expected
    far_wrong = int((differ & ~near).sum())
    num_near, num_differ = int(near.sum()), int(differ.sum())
    if far_wrong:
        raise AssertionError(f'{name}: {far_wrong} elements differ whose score is farther than {tol:.3g} '
                             f'from its threshold or runner-up ({num_differ} differ in all)')
    if num_differ > max_flips:
        raise AssertionError(f'{name}: {num_differ} near-tie elements differ (at most {max_flips} allowed)')
    if actual.size and num_near > max_near_fraction * actual.size:
        raise AssertionError(f'{name}: {num_near} of {actual.size} elements are within {tol:.3g} of a tie '
                             f'(more than {max_near_fraction:.1%}); the comparison would say nothing')
    return num_near, num_differ


def assert_same_order(actual_order, expected_order, scores, tol, *, max_flips=10, name='order'):
    """Two orderings of items by score agree except where neighbouring scores are within ``tol``.

    Args:
        actual_order, expected_order: 1-D arrays of item indices (or keys), expected in the order of
            decreasing (or increasing) ``scores`` of the expected run.
        scores: the expected scores of ``expected_order``'s items, in that order.
        tol (float): the scores' tolerance.
    """
    actual_order, expected_order = _numpy(actual_order), _numpy(expected_order)
    scores = _numpy(scores).astype(np.float64)
    if actual_order.shape != expected_order.shape:
        raise AssertionError(f'{name}: {actual_order.shape} items != expected {expected_order.shape}')
    gaps = np.abs(np.diff(scores))
    margin = np.full(len(scores), np.inf)
    if len(scores) > 1:
        margin[:-1] = gaps
        margin[1:] = np.minimum(margin[1:], gaps)
    return assert_equal_away_from_ties(actual_order, expected_order, margin, tol, max_flips=max_flips,
                                       max_near_fraction=1.0, name=name)


def tower_error_model(tower_cfg, extra=0, **kwargs):
    """Error model of a transformer tower given by an open_clip ``vision_cfg`` / ``text_cfg`` dict:
    ``depth`` = its layers + ``extra`` stages, ``width`` = its MLP width (``mlp_ratio`` x width, default 4).
    Extra keyword arguments (``scale``, ``atol``) are passed through."""
    width = int(round(tower_cfg.get('mlp_ratio', 4.0) * tower_cfg['width']))
    return dict(depth=tower_cfg['layers'] + extra, width=width, **kwargs)


def softmax_error_model(logit_model, logits, atol_roundings=8):
    """Error model of ``softmax(logits)`` from that of the logits: a softmax moves each probability by at
    most half of the logits' largest change (``|dp_k| <= 2 p_k (1 - p_k) max|dx| <= max|dx| / 2``), so the
    scale is ``max|logits| / 2``; plus ``atol_roundings`` float32 roundings of values <= 1."""
    return dict(logit_model, scale=float(np.abs(_numpy(logits)).max(initial=0)) / 2,
                atol=atol_roundings * EPS32)
