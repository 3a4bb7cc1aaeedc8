import sys

import pytest
import torch

import ovseg  # noqa: F401
from ovseg.ops import point_sample, sigmoid_focal_loss
from ovseg.utils.mmcv_ops import compiled_mmcv_available


def test_mmseg_models_import_with_mmcv_lite():
    import mmseg.models  # noqa: F401  needs mmcv.ops at import time
    assert 'mmcv.ops' in sys.modules


@pytest.mark.skipif(compiled_mmcv_available(), reason='compiled mmcv installed: its ops are used')
def test_fallback_missing_op_raises_module_not_found():
    import mmcv.ops
    assert mmcv.ops.__ovseg_fallback__
    with pytest.raises(ModuleNotFoundError, match='compiled mmcv'):
        from mmcv.ops import CrissCrossAttention  # noqa: F401
    assert not hasattr(mmcv.ops, '__wrapped__')


def test_point_sample_matches_manual_bilinear():
    feat = torch.arange(16.).view(1, 1, 4, 4)
    # centre of pixel (row 1, col 2) in [0, 1] coordinates with align_corners=False
    pts = torch.tensor([[[2.5 / 4, 1.5 / 4]]])
    assert point_sample(feat, pts).item() == pytest.approx(6.0)
    grid = torch.rand(1, 3, 5, 2)
    assert point_sample(torch.randn(2, 4, 8, 8), grid.expand(2, -1, -1, -1)).shape == (2, 4, 3, 5)


def test_sigmoid_focal_loss_reference_formula():
    pred = torch.randn(6, 3)
    target = torch.tensor([0, 1, 2, 3, 1, 0])  # 3 = background
    loss = sigmoid_focal_loss(pred, target, 2.0, 0.25, None, 'none')
    one_hot = torch.zeros(6, 3)
    for i, t in enumerate(target):
        if t < 3:
            one_hot[i, t] = 1
    p = pred.sigmoid()
    pt = torch.where(one_hot.bool(), p, 1 - p)
    alpha = torch.where(one_hot.bool(), 0.25, 0.75)
    ref = -alpha * (1 - pt) ** 2 * torch.log(pt)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    assert sigmoid_focal_loss(pred, target).shape == ()
