from .ov_segmentor import OVSegmentor
from .corrclip_segmentor import CorrCLIPSegmentor
from .proxyclip_segmentor import ProxyCLIPSegmentor
from .query_segmentor import OVQuerySegmentor
from .sam3_segmentor import SAM3Segmentor
from .sam_proposal_segmentor import SAMProposalSegmentor
from .trident_segmentor import TridentSegmentor

__all__ = ['CorrCLIPSegmentor', 'OVQuerySegmentor', 'OVSegmentor', 'ProxyCLIPSegmentor', 'SAM3Segmentor',
           'SAMProposalSegmentor', 'TridentSegmentor']
