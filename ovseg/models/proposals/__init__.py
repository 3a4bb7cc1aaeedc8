"""SAM: the predictor module, Trident-style refinement of coarse maps, automatic proposals, prompts."""
from .automatic import MaskProposals, SAMAutomaticProposals
from .coarse_regions import CoarseRegions, RegionPrompts, build_region_prompts, find_coarse_regions
from .label_maps import (GeneratedLabelMaps, PrecomputedLabelMaps, SuperpixelProposals, map_correction,
                         proposals_to_label_map)
from .interactive import InteractivePrompter, InteractiveResult
from .mask_pooling import classify_pooled, mask_cell_weights, masks_to_scores
from .sam import SAM_ARCHS, SAMImage, SAMMasks, SAMPredictor, build_sam_model, check_prompts
from .sam_refine import RefineResult, SAMRefiner, merge_refinement, packing_scores

__all__ = ['GeneratedLabelMaps', 'PrecomputedLabelMaps', 'SuperpixelProposals', 'map_correction',
           'proposals_to_label_map', 'CoarseRegions', 'InteractivePrompter', 'InteractiveResult', 'MaskProposals', 'RefineResult',
           'RegionPrompts', 'SAMAutomaticProposals', 'SAMImage', 'SAMMasks', 'SAMPredictor', 'SAMRefiner',
           'SAM_ARCHS', 'build_region_prompts', 'build_sam_model', 'check_prompts', 'classify_pooled',
           'find_coarse_regions', 'mask_cell_weights', 'masks_to_scores', 'merge_refinement',
           'packing_scores']
