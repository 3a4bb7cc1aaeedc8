"""Make mmengine Runner checkpoints loadable with ``torch.load(path, weights_only=True)``.

mmengine 0.10 writes ``HistoryBuffer`` objects, numpy arrays and dtypes, and numpy scalars (e.g.
``message_hub.runtime_info.eta``, metric values) into ``meta`` / ``message_hub``. Unpickling a numpy
scalar needs ``builtins.getattr``, which must never be allowlisted, so such a file cannot be read safely.
:class:`WeightsOnlyCheckpointHook` rewrites every section except ``state_dict`` into plain Python values
and tensors before the file is written, and rebuilds the ``HistoryBuffer`` objects after a load so that
``--resume`` continues with the same logs. No class is added to torch's weights-only allowlist.
"""
import collections
import collections.abc
import warnings

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from ovseg.registry import HOOKS

HISTORY_BUFFER_TAG = '__ovseg_history_buffer__'
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes)
# Kept as they are: torch's weights-only unpickler reads them without any allowlisting.
_TORCH_SAFE_TYPES = (torch.Tensor, torch.dtype, torch.Size)


def _history_buffer_to_dict(buffer):
    """HistoryBuffer -> a tagged dict of tensors (exact values, float64/int64 kept)."""
    return {HISTORY_BUFFER_TAG: True,
            'log_history': torch.from_numpy(np.asarray(buffer._log_history, dtype=np.float64).copy()),
            'count_history': torch.from_numpy(np.asarray(buffer._count_history, dtype=np.int64).copy()),
            'max_length': int(buffer.max_length)}


def _dict_to_history_buffer(state):
    return HistoryBuffer(log_history=state['log_history'].numpy(),
                         count_history=state['count_history'].numpy(),
                         max_length=int(state['max_length']))


def _convert_mapping(obj, path, converted):
    items = ((key if type(key) in _PLAIN_TYPES else to_weights_only(key, f'{path}<key>', converted),
              to_weights_only(value, f'{path}.{key}', converted)) for key, value in obj.items())
    # OrderedDict is allowlisted; other mapping subclasses (defaultdict, mmengine ConfigDict) are not.
    return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)


def to_weights_only(obj, path='checkpoint', converted=None):
    """Return a copy of ``obj`` holding only types ``torch.load(weights_only=True)`` reads.

    numpy scalars become Python numbers, numpy arrays become lists, numpy dtypes become strings,
    ``HistoryBuffer`` becomes a tagged dict of tensors, sets and deques become lists, named tuples plain
    tuples; tensors, torch dtypes and sizes are kept. Anything else is replaced by its ``repr`` (a warning
    names it) so that saving never fails at the end of a long run.

    Args:
        obj: the object to convert (e.g. ``checkpoint['meta']``).
        path (str): name of ``obj`` used in warnings. Default 'checkpoint'.
        converted (list, optional): receives the path of every object that was replaced by its ``repr``.
    """
    if type(obj) in _PLAIN_TYPES or isinstance(obj, _TORCH_SAFE_TYPES):
        return obj
    if isinstance(obj, np.generic):  # np.float64 subclasses float, so this test comes before int/float
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.dtype):
        return str(obj)
    if isinstance(obj, HistoryBuffer):
        return _history_buffer_to_dict(obj)
    if isinstance(obj, torch.device):
        return str(obj)  # older torch releases do not read torch.device in weights-only mode
    for base in (int, float, complex, bytes):  # subclasses (IntEnum, ...) pickle by their class name
        if isinstance(obj, base):
            return base(obj)
    if isinstance(obj, str):
        return str.__str__(obj)  # the exact-str value of a str subclass (str enums, ...)
    if isinstance(obj, collections.abc.Mapping):
        return _convert_mapping(obj, path, converted)
    if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        values = [to_weights_only(v, f'{path}[{i}]', converted) for i, v in enumerate(obj)]
        return tuple(values) if isinstance(obj, tuple) else values
    warnings.warn(f'{path}: {type(obj).__name__} cannot be stored in a weights-only checkpoint; '
                  f'saving its repr instead.')
    if converted is not None:
        converted.append(path)
    return repr(obj)


def restore_message_hub(message_hub_state):
    """Rebuild ``HistoryBuffer`` objects in a loaded ``checkpoint['message_hub']`` (in place).

    Args:
        message_hub_state (dict): ``log_scalars`` / ``runtime_info`` / ``resumed_keys`` as saved by
            :class:`WeightsOnlyCheckpointHook` (older full checkpoints are left as they are).
    """
    scalars = message_hub_state.get('log_scalars', {})
    for key, value in list(scalars.items()):
        if isinstance(value, dict) and value.get(HISTORY_BUFFER_TAG):
            scalars[key] = _dict_to_history_buffer(value)
    return message_hub_state


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Rewrites Runner checkpoints so that ``torch.load(path, weights_only=True)`` reads them.

    ``before_save_checkpoint`` converts every section except ``state_dict`` (``meta``, ``message_hub``,
    ``optimizer``, ``param_schedulers``, ...) with :func:`to_weights_only`; ``after_load_checkpoint``
    turns the saved history buffers back into ``HistoryBuffer`` so that resuming restores the log
    smoothing windows and the iteration count as mmengine's own checkpoints do.

    The priority is 'VERY_LOW' so that hooks which edit the checkpoint (EMA, ...) run first.

    Args:
        sections_to_skip (Sequence[str]): top-level keys left untouched. Default ('state_dict',): the model
            weights are tensors already, and rebuilding that OrderedDict would drop its ``_metadata``.
    """

    priority = 'VERY_LOW'

    def __init__(self, sections_to_skip=('state_dict',)):
        self.sections_to_skip = tuple(sections_to_skip)

    def before_save_checkpoint(self, runner, checkpoint):
        """Convert ``checkpoint`` in place (the dict mmengine is about to ``torch.save``)."""
        converted = []
        for key in list(checkpoint):
            if key not in self.sections_to_skip:
                checkpoint[key] = to_weights_only(checkpoint[key], key, converted)
        if converted:
            runner.logger.warning(f'Stored as repr in the checkpoint (not weights-only types): {converted}')

    def after_load_checkpoint(self, runner, checkpoint):
        """Rebuild ``HistoryBuffer`` objects so ``MessageHub.load_state_dict`` resumes the logs."""
        if isinstance(checkpoint.get('message_hub'), dict):
            restore_message_hub(checkpoint['message_hub'])
