"""FrozenSeg on FC-CLIP's parts: SAM branch, SAM injectors, mask-proposal ensemble, segmentor."""
from .injector import FrozenSegInjector, InjectionContext
from .proposal_ensemble import proposal_ensemble, proposals_for_pooling
from .sam_branch import FrozenSegSAMBranch
from .segmentor import FrozenSegSegmentor

__all__ = ['FrozenSegInjector', 'FrozenSegSAMBranch', 'FrozenSegSegmentor', 'InjectionContext',
           'proposal_ensemble', 'proposals_for_pooling']
