"""Data pipeline transforms for the datasets mmseg lacks."""
from .loading import LoadUint16Annotations, check_label_values
from .panoptic import (LoadPanopticAnnotations, panoptic_to_instances, panoptic_to_semantic,
                       rgb_to_panoptic_id)
from .panoptic_inputs import LoadPanopticSegIds, PackPanopticInputs
from .sam_proposals import LoadSAMProposals
from .torchvision_resize import TorchvisionResize

__all__ = [
    'LoadPanopticAnnotations',
    'LoadPanopticSegIds',
    'LoadSAMProposals',
    'LoadUint16Annotations',
    'PackPanopticInputs',
    'TorchvisionResize',
    'check_label_values',
    'panoptic_to_instances',
    'panoptic_to_semantic',
    'rgb_to_panoptic_id',
]
