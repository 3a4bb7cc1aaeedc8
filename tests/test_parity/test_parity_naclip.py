"""NACLIP parity with the original code (fixtures in $OVSEG_PARITY_DIR/naclip, sinahmr/NACLIP).

Every case of the folder's manifest is checked: text, preprocessing, the designated window through the
walker (key-key attention plus the Gaussian neighbourhood prior ω, no residual, no FFN), every window's
cosines, the stitched logits (slide or whole image), PAMR, probabilities (renormalised after the
prediction) and the prediction. Tolerances: see ``query_parity_checks``; PAMR: depth 10 iterations,
width 16 neighbours x 18 std samples, at the scale of the logits, plus the stitched logits' tolerance.
The full-image tests (stitched logits, PAMR, prediction) are marked slow.
"""
import numpy as np
import pytest

from ovseg.testing import assert_close, parity_dir, tolerance_for
from query_parity_checks import (MLP_WIDTH, cases, check_prediction, check_stitched, check_text_and_input,
                                 check_window, load, num_blocks, pick, refined)

FOLDER = 'naclip'
pytestmark = pytest.mark.skipif(parity_dir(FOLDER) is None, reason=f'parity fixtures not found: set '
                                f'OVSEG_PARITY_DIR to a folder holding {FOLDER}/')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_naclip_text_and_input(case):
    check_text_and_input(FOLDER, case)


def _neighbourhood(out, fx, attn_tol):
    """ω (exact up to exp rounding), k kᵀ (unscaled), the logits and the block output = out_proj(A v)."""
    rows = fx['attn_q_idx']
    omega = out['omega'][rows].numpy()
    assert_close(omega, fx['w_omega_rows'], depth=2, width=1, scale=1.0, name='omega')
    logits = out['attn_logits'][:, rows]
    assert_close(logits.numpy(), fx['w_attn_logits_rows'], name='attn_logits', **attn_tol)
    head_dim = out['q'].shape[-1] // logits.shape[0]
    kk = (logits - out['omega'][rows]) / head_dim ** -0.5
    assert_close(kk.numpy(), fx['w_kk_rows'], name='kk_rows', **dict(attn_tol, scale=attn_tol['scale'] * 8))
    assert 'mlp' not in out
    assert_close(out['resid1'].numpy()[fx['tok_idx']], fx['w_attn_proj_sub'], depth=attn_tol['depth'],
                 width=MLP_WIDTH, name='attn_proj')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_naclip_window(case):
    check_window(FOLDER, case, _neighbourhood)


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_naclip_stitched_logits(case):
    check_stitched(FOLDER, case, key='seg_logits_stitched')


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_naclip_pamr(case):
    """PAMR of our stitched logits (within their tolerance of the fixture's; PAMR's output is a convex
    combination of its input, so that tolerance carries over) against the fixture's refined logits."""
    man, _, hp, model, fx = load(FOLDER, case)
    assert [type(p).__name__ for p in model.postprocessors] == ['PAMR']
    assert (model.postprocessors[0].num_iter, model.postprocessors[0].dilations) == (10, (8, 16))
    want, step = pick(fx, 'seg_logits_pamr')
    scale = float(np.abs(want).max())
    logits_tol = tolerance_for(want, depth=num_blocks(man) + 3, width=MLP_WIDTH, scale=1.0)
    assert_close(refined(FOLDER, case)[:, ::step, ::step], want, depth=hp['pamr_steps'] + 1, width=16 * 18,
                 scale=scale, atol=logits_tol, name='seg_logits_pamr')


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_naclip_prediction(case):
    check_prediction(FOLDER, case)
