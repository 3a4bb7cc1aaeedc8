"""Make ``import mmcv.ops`` work with mmcv-lite.

mmsegmentation 1.x imports a few functions from ``mmcv.ops`` at import time (``point_sample``,
``sigmoid_focal_loss``). ``mmcv-lite`` ships no compiled extension, so that import fails. When (and only
when) compiled mmcv is absent, a module named ``mmcv.ops`` holding ovseg's pure-PyTorch implementations
is registered in ``sys.modules``. Functions mmseg imports only inside ``try`` blocks (CrissCrossAttention,
PSAMask, ...) are deliberately absent: asking the fallback for them raises ``ModuleNotFoundError`` (what
those ``try`` blocks catch), so those heads keep reporting that they need full mmcv.
"""
import importlib
import sys
import types
import warnings


def compiled_mmcv_available():
    """Return True when ``mmcv._ext`` (the compiled extension of full mmcv) can be imported."""
    try:
        importlib.import_module('mmcv._ext')
    except ImportError:
        return False
    return True


def _missing_op(name):
    # Dunder lookups (``__path__``, ``__file__``, ...) come from the import system and must stay
    # AttributeErrors; an op name raises what mmseg's optional imports expect.
    if name.startswith('__') and name.endswith('__'):
        raise AttributeError(name)
    raise ModuleNotFoundError(f'mmcv.ops.{name} needs compiled mmcv (pip install mmcv); ovseg\'s pure-PyTorch '
                              f'fallback for mmcv-lite provides only the ops ovseg and mmseg need.')


def ensure_mmcv_ops():
    """Install the pure-PyTorch ``mmcv.ops`` fallback if compiled mmcv is absent; idempotent.

    Returns:
        bool: True if the fallback is in use, False if the real ``mmcv.ops`` is.
    """
    current = sys.modules.get('mmcv.ops')
    if current is not None:
        return bool(getattr(current, '__ovseg_fallback__', False))
    if compiled_mmcv_available():
        return False
    import mmcv

    from ovseg import ops
    module = types.ModuleType('mmcv.ops', doc='ovseg pure-PyTorch fallback for mmcv.ops (mmcv-lite).')
    for name in ops.__all__:
        setattr(module, name, getattr(ops, name))
    module.__all__ = list(ops.__all__)
    module.__ovseg_fallback__ = True
    module.__path__ = []  # a package with no submodules: ``import mmcv.ops.x`` fails cleanly
    module.__getattr__ = _missing_op
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    _import_transformer_bricks_quietly()
    return True


def _import_transformer_bricks_quietly():
    # mmcv.cnn.bricks.transformer warns at import that compiled MultiScaleDeformableAttention is missing;
    # ovseg has its own pure-PyTorch deformable attention, so the warning is noise. Import it once with
    # the warning filtered in a local scope (the process-wide filters stay untouched).
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')
        importlib.import_module('mmcv.cnn.bricks.transformer')
