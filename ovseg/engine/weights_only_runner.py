"""An mmengine Runner whose checkpoint reads go through ``torch.load(weights_only=True)``."""
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from ovseg.utils.checkpoint import load_checkpoint_file


class WeightsOnlyRunner(Runner):
    """mmengine ``Runner`` whose checkpoint reads never unpickle arbitrary objects.

    mmengine 0.10 calls ``torch.load`` without ``weights_only``, which means ``False`` before torch 2.6.
    Only local files are accepted.
    """

    def load_checkpoint(self, filename, map_location='cpu', strict=False, revise_keys=((r'^module.', ''),)):
        """Same contract as :meth:`mmengine.runner.Runner.load_checkpoint`, read with weights_only=True."""
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        # WeightsOnlyCheckpointHook rebuilds the message hub's HistoryBuffers here.
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint
