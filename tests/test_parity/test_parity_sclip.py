"""SCLIP parity with the original code (fixtures in $OVSEG_PARITY_DIR/sclip, wangf3014/SCLIP).

Every case of the folder's manifest is checked: text, preprocessing, the designated window through the
walker (correlative attention in the last block, residual and FFN kept), every window's cosines, the
stitched logits, probabilities with the area rule, and the prediction. Tolerances: see
``query_parity_checks`` (float32 error model of ``ovseg.testing.tolerance``).
The full-image tests (stitched logits, prediction) are marked slow.
"""
import pytest

from ovseg.testing import assert_close, parity_dir
from query_parity_checks import MLP_WIDTH, cases, check_prediction, check_stitched, check_text_and_input, check_window

FOLDER = 'sclip'
pytestmark = pytest.mark.skipif(parity_dir(FOLDER) is None, reason=f'parity fixtures not found: set '
                                f'OVSEG_PARITY_DIR to a folder holding {FOLDER}/')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_sclip_text_and_input(case):
    check_text_and_input(FOLDER, case)


def _correlative(out, fx, attn_tol):
    """The two softmax maps of the correlative attention and the block's residual / MLP stages."""
    qq, kk = out['attn_parts']
    assert_close(qq[:, fx['attn_q_idx']].numpy(), fx['w_attn_qq_rows'], name='attn_qq_rows', **attn_tol)
    assert_close(kk[:, fx['attn_q_idx']].numpy(), fx['w_attn_kk_rows'], name='attn_kk_rows', **attn_tol)
    depth = attn_tol['depth']
    tok = fx['tok_idx']
    assert_close(out['resid1'].numpy()[tok], fx['w_resid1_sub'], depth=depth, width=MLP_WIDTH, name='resid1')
    assert_close(out['mlp'].numpy()[tok], fx['w_mlp_out_sub'], depth=depth + 1, width=MLP_WIDTH, name='mlp_out')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_sclip_window(case):
    check_window(FOLDER, case, _correlative)


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_sclip_stitched_logits(case):
    check_stitched(FOLDER, case)


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_sclip_prediction(case):
    check_prediction(FOLDER, case)
