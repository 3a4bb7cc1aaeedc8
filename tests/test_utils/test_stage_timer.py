"""ovseg.utils.stage_timer: exclusive stage times, method stages, and a clean removal."""
import time

import pytest
import torch.nn as nn

from ovseg.utils.stage_timer import StageTimer, stage_plan


class Sleep(nn.Module):
    def __init__(self, seconds, inner=None):
        super().__init__()
        self.seconds, self.inner = seconds, inner

    def forward(self, x):
        time.sleep(self.seconds)
        return self.inner(x) if self.inner is not None else x


class OVSegmentor(nn.Module):  # the name selects STAGE_METHODS['OVSegmentor'] and merges ``head``
    def __init__(self):
        super().__init__()
        self.inner = Sleep(0.02)
        self.outer = Sleep(0.01, self.inner)  # runs ``inner`` inside itself
        self.head = Sleep(0.0)

    def scores_from_features(self, x):
        return self.head(x)

    def forward(self, x):
        return self.scores_from_features(self.outer(x))


def test_nested_stages_are_exclusive_and_removed():
    model = OVSegmentor()
    modules, methods = stage_plan(model)
    assert [name for name, _ in modules] == ['inner', 'outer']  # ``head`` stays in head_rules
    assert [(name, method) for name, _, method in methods] == [('head_rules', 'scores_from_features')]
    timer = StageTimer(model, 'cpu')
    start = time.perf_counter()
    model(1)
    total = time.perf_counter() - start
    split = timer.split_ms(total, 1)
    assert split['inner'] >= 19.5 and split['outer'] >= 9.5
    assert split['outer'] < 25  # without the 20 ms of ``inner`` (sleep overshoot allowed for)
    assert split['head_rules'] >= 0 and split['other'] >= 0
    assert sum(split.values()) == pytest.approx(1000 * total)
    timer.remove()
    assert 'scores_from_features' not in vars(model) and not model.outer._forward_pre_hooks
    timer.reset()
    model(1)
    assert not timer.totals
