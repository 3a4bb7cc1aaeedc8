"""ClearCLIP parity with the original code (fixtures in $OVSEG_PARITY_DIR/clearclip, mc-lan/ClearCLIP).

Every case of the folder's manifest is checked: text (class lines split on ','), preprocessing, the
designated window (zero-padded symmetrically when its sides are not multiples of 16) through the walker
(query-query attention, no residual, no FFN in the last block), every window's cosines, the stitched
logits, probabilities and the prediction. Tolerances: see ``query_parity_checks``.
The full-image tests (stitched logits, prediction) are marked slow.
"""
import pytest

from ovseg.testing import assert_close, parity_dir
from query_parity_checks import MLP_WIDTH, cases, check_prediction, check_stitched, check_text_and_input, check_window

FOLDER = 'clearclip'
pytestmark = pytest.mark.skipif(parity_dir(FOLDER) is None, reason=f'parity fixtures not found: set '
                                f'OVSEG_PARITY_DIR to a folder holding {FOLDER}/')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_clearclip_text_and_input(case):
    check_text_and_input(FOLDER, case)


def _query_query(out, fx, attn_tol):
    """Attention logits q qᵀ / 8, and the block output = out_proj(A v) (no residual, no FFN)."""
    assert_close(out['attn_logits'][:, fx['attn_q_idx']].numpy(), fx['w_attn_logits_rows'], name='attn_logits',
                 **attn_tol)
    assert 'mlp' not in out
    tok = fx['tok_idx']
    assert_close(out['resid1'].numpy()[tok], fx['w_attn_proj_sub'], depth=attn_tol['depth'], width=MLP_WIDTH,
                 name='attn_proj')


@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_clearclip_window(case):
    check_window(FOLDER, case, _query_query)


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_clearclip_stitched_logits(case):
    check_stitched(FOLDER, case)


@pytest.mark.slow
@pytest.mark.parametrize('case', cases(FOLDER))
def test_parity_clearclip_prediction(case):
    check_prediction(FOLDER, case)
