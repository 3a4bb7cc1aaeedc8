"""WeightsOnlyCheckpointHook: what mmengine puts in a checkpoint becomes weights-only loadable."""
import collections
import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from ovseg.engine.hooks import WeightsOnlyCheckpointHook, restore_message_hub, to_weights_only
from ovseg.registry import HOOKS


def _round_trip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _runner_like_checkpoint():
    """What mmengine 0.10.7 writes besides the weights (types measured on a real run)."""
    loss = HistoryBuffer()
    for value in (0.5, 0.25, 0.125):
        loss.update(value)
    return {
        'meta': dict(epoch=0, iter=np.int64(3), seed=7, dataset_meta=dict(classes=('a', 'b'),
                     palette=np.array([[1, 2, 3], [4, 5, 6]]), label_map={0: 255})),
        'state_dict': collections.OrderedDict(w=torch.ones(2)),
        'message_hub': dict(
            log_scalars=collections.OrderedDict({'train/loss': loss}),
            runtime_info=collections.OrderedDict(eta=np.float64(12.5), dtype=np.dtype('float32'),
                                                 keep_ckpt_ids=collections.deque([2, 3])),
            resumed_keys={'train/loss': True, 'eta': False}),
        'optimizer': dict(state={0: dict(step=torch.tensor(3.0))},
                          param_groups=[dict(lr=0.1, betas=(0.9, 0.99))]),
    }


def test_unconverted_checkpoint_needs_unsafe_loading():
    with pytest.raises(Exception, match='(?i)weights only load failed'):
        _round_trip(_runner_like_checkpoint())


def test_hook_makes_checkpoint_weights_only_and_resumable():
    hook = HOOKS.build(dict(type='WeightsOnlyCheckpointHook'))
    assert isinstance(hook, WeightsOnlyCheckpointHook)
    checkpoint = _runner_like_checkpoint()
    hook.before_save_checkpoint(SimpleNamespace(logger=None), checkpoint)
    loaded = _round_trip(checkpoint)  # no class allowlisted
    assert loaded['meta']['iter'] == 3 and type(loaded['meta']['iter']) is int
    assert loaded['meta']['dataset_meta']['palette'] == [[1, 2, 3], [4, 5, 6]]
    info = loaded['message_hub']['runtime_info']
    assert info['eta'] == 12.5 and info['dtype'] == 'float32' and info['keep_ckpt_ids'] == [2, 3]
    assert loaded['optimizer']['param_groups'][0]['betas'] == (0.9, 0.99)

    hook.after_load_checkpoint(None, loaded)
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(restored, HistoryBuffer)
    assert restored.mean() == pytest.approx(0.875 / 3) and restored.current() == 0.125


def test_unknown_objects_are_stored_as_repr():
    class Opaque:
        def __repr__(self):
            return 'Opaque()'

    converted = []
    with pytest.warns(UserWarning, match='meta.x'):
        out = to_weights_only(dict(x=Opaque(), y={1, 2}), 'meta', converted)
    assert out == dict(x='Opaque()', y=[1, 2]) and converted == ['meta.x']
    assert restore_message_hub(dict(log_scalars={'k': 1.0})) == dict(log_scalars={'k': 1.0})
