from .ov_segmentor import OVSegmentor
from .sam_proposal_segmentor import SAMProposalSegmentor

__all__ = ['OVSegmentor', 'SAMProposalSegmentor']
