"""mmengine hooks registered into mmseg's HOOKS registry."""
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook, restore_message_hub, to_weights_only

__all__ = ['WeightsOnlyCheckpointHook', 'restore_message_hub', 'to_weights_only']
