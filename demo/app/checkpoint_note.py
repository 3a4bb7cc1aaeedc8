"""A line confirming a loaded ``--checkpoint`` instead of open_clip's "initialized randomly" warning.

Given a checkpoint, ovseg builds the model without pretrained weights for the parts the checkpoint
holds, then loads it strictly. In between, open_clip warns "No pretrained weights loaded for model
'...'. Model initialized randomly.", which stops being true a moment later. While a model is built
*with* a checkpoint, :func:`building` drops that one warning and watches for ovseg's own confirmation
(``Loaded N tensors from PATH ...``, ``ovseg.apis.model_loading``); where none came (a bare open_clip
state dict, a SAM checkpoint) the caller prints :func:`loaded_line`. Without a checkpoint the warning
stays: then the weights really are random (or came from a pretrained tag, which ovseg reports itself).
"""
import logging
from contextlib import contextmanager

OPEN_CLIP_RANDOM_INIT = 'No pretrained weights loaded for model'
# open_clip logs through the root logger (logging.warning); its module logger is covered in case
# a later version switches to it.
_LOGGERS = ('', 'open_clip', 'open_clip.factory')


class CheckpointWatch(logging.Filter):
    """Drops open_clip's random-init warning; ``confirmed``: ovseg logged that it loaded the file."""

    def __init__(self, checkpoint):
        super().__init__()
        self.checkpoint = str(checkpoint)
        self.confirmed = False

    def filter(self, record):
        message = str(record.getMessage())
        if message.startswith(OPEN_CLIP_RANDOM_INIT):
            return False
        if message.startswith('Loaded ') and self.checkpoint in message:
            self.confirmed = True
        return True


def _mmengine_logger():
    try:
        from mmengine.logging import MMLogger
    except ImportError:
        return None
    return MMLogger.get_current_instance()


@contextmanager
def building(checkpoint):
    """Build a model inside ``with building(checkpoint) as watch:``; with a ``checkpoint``,
    open_clip's random-init warning is dropped and ``watch.confirmed`` tells whether ovseg confirmed
    the load itself (see the module docstring)."""
    watch = CheckpointWatch(checkpoint)
    if not checkpoint:
        yield watch
        return
    loggers = [logging.getLogger(name) for name in _LOGGERS] + [_mmengine_logger()]
    loggers = [logger for logger in loggers if logger is not None]
    for logger in loggers:
        logger.addFilter(watch)
    try:
        yield watch
    finally:
        for logger in loggers:
            logger.removeFilter(watch)


def loaded_line(checkpoint, what):
    """The confirmation printed after ``what`` was built from ``checkpoint`` (when ovseg did not)."""
    return (f'Loaded checkpoint {checkpoint} into {what} (weights_only; every key of the checkpoint '
            f'matched the model).')
