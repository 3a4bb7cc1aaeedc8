"""MAFT+ on FC-CLIP's parts: content-dependent transfer, its training losses, segmentor."""
from .cdt import CDTOutput, ContentDependentTransfer
from .losses import MAFTMaskAwareLoss, MAFTRepresentationCompensationLoss, global_pod
from .segmentor import MAFTPlusSegmentor

__all__ = ['CDTOutput', 'ContentDependentTransfer', 'MAFTMaskAwareLoss', 'MAFTPlusSegmentor',
           'MAFTRepresentationCompensationLoss', 'global_pod']
