"""ovseg: open-vocabulary dense prediction on OpenMMLab.

``import ovseg`` registers every ovseg module into mmsegmentation's registries, so downstream configs use
``custom_imports=dict(imports=['ovseg'], allow_failed_imports=False)`` and plain type names.
"""
from .version import __version__
from . import registry  # noqa: F401  installs the mmcv.ops fallback before mmseg is imported
from . import models  # noqa: F401,E402
from . import engine  # noqa: F401,E402  runner hooks (weights-only checkpoints)
from . import datasets, evaluation  # noqa: F401,E402

__all__ = ['__version__']
