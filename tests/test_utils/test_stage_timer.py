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


class Segmentor(nn.Module):  # declares its method stage and merges ``head`` into it
    timed_stages = (('scores_from_features', 'head_rules'),)
    merged_children = ('head',)

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
    model = Segmentor()
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


class Count:
    """An output class counted by StageTimer."""

    def stage_count(self):
        return 'things', 3


class Flagged(nn.Module):
    timed_as_stage = True

    def forward(self, x):
        return x


class Foreign(nn.Module):  # stands for a class we do not own: its owner declares it
    def forward(self, x):
        return x


class Owner(nn.Module):
    stage_submodules = ('wrapped.foreign',)

    def __init__(self):
        super().__init__()
        self.wrapped = nn.Sequential()
        self.wrapped.foreign = Foreign()
        self.flagged = Flagged()

    def forward(self, x):
        return self.flagged(self.wrapped.foreign(x))


class NewSegmentor(Segmentor):  # a class defined outside ovseg.utils.stage_timer, adding to its base
    timed_stages = (('scores_from_features', 'scores'), ('count', None))

    def __init__(self):
        super().__init__()
        self.owner = Owner()

    def count(self, x):
        return Count()

    def forward(self, x):
        self.count(x)
        return self.scores_from_features(self.owner(self.outer(x)))


def test_declared_stages_of_a_new_class_are_timed():
    """Declarations on the classes (inherited, relabelled, flagged, owner-named, counted) need no catalogue."""
    model = NewSegmentor()
    modules, methods = stage_plan(model)
    assert [name for name, _ in modules] == ['inner', 'outer', 'owner', 'owner.wrapped.foreign',
                                             'owner.flagged']
    assert [(name, method) for name, _, method in methods] == [('scores', 'scores_from_features'),
                                                               ('count', 'count')]
    timer = StageTimer(model, 'cpu')
    model(1)
    assert timer.calls['scores'] == timer.calls['owner.flagged'] == timer.calls['owner.wrapped.foreign'] == 1
    assert timer.counts == {'things': 3}
    timer.remove()
    assert 'count' not in vars(model) and not model.owner.flagged._forward_pre_hooks
