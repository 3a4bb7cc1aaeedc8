"""Post-processors of a segmentor's class probabilities, usable by any segmentor.

Score-map post-processors (``OVSegmentor(postprocessors=[...])``: PAMR) run first; the SAM refinement
(``SAMRefiner``, ``OVSegmentor(sam_refiner=...)`` / ``TridentSegmentor``) is the final one, on the
probabilities about to be packed.
"""
from .pamr import PAMR, pamr
from .sam_refine import RefineResult, SAMRefiner, merge_refinement, packing_scores

__all__ = ['PAMR', 'RefineResult', 'SAMRefiner', 'merge_refinement', 'packing_scores', 'pamr']
