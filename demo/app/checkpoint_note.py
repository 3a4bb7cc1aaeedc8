"""A line confirming a loaded ``--checkpoint`` instead of open_clip's "initialized randomly" warning.

Given a checkpoint, ovseg builds the model without pretrained weights (the checkpoint holds them) and
then loads the checkpoint strictly. In between, open_clip warns "No pretrained weights loaded for model
'...'. Model initialized randomly.", which stops being true a moment later. While a model is built
*with* a checkpoint, :func:`building` drops that one warning, and the caller prints
:func:`loaded_line` once the build succeeded. Without a checkpoint the warning stays: then the weights
really are random (or came from a pretrained tag, which ovseg reports itself).
"""
import logging
from contextlib import contextmanager

OPEN_CLIP_RANDOM_INIT = 'No pretrained weights loaded for model'
# open_clip logs through the root logger (logging.warning); its module logger is covered in case
# a later version switches to it.
_LOGGERS = ('', 'open_clip', 'open_clip.factory')


class _DropRandomInit(logging.Filter):
    def filter(self, record):
        return not str(record.getMessage()).startswith(OPEN_CLIP_RANDOM_INIT)


@contextmanager
def building(checkpoint):
    """Build a model inside this block; with a ``checkpoint``, open_clip's random-init warning is
    dropped (see the module docstring)."""
    if not checkpoint:
        yield
        return
    drop = _DropRandomInit()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def loaded_line(checkpoint, what):
    """The confirmation printed after ``what`` was built from ``checkpoint``."""
    return (f'Loaded checkpoint {checkpoint} into {what} (weights_only; every key of the checkpoint '
            f'matched the model).')
