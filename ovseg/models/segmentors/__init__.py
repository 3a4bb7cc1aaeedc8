from .ov_segmentor import OVSegmentor
from .sam3_segmentor import SAM3Segmentor
from .sam_proposal_segmentor import SAMProposalSegmentor

__all__ = ['OVSegmentor', 'SAM3Segmentor', 'SAMProposalSegmentor']
