"""Mask sources behind one interface: segment-anything (SAM) and SAM 2 (transformers) backends for
automatic proposals, region prompts of coarse maps and click/box prompts; SAM 3 text prompts.

The SAM refinement of coarse maps (``SAMRefiner``) is a post-processor: :mod:`ovseg.models.postprocessors`.
"""
from .automatic import MaskProposals, SAMAutomaticProposals
from .coarse_regions import CoarseRegions, RegionPrompts, build_region_prompts, find_coarse_regions
from .label_maps import (GeneratedLabelMaps, PrecomputedLabelMaps, SuperpixelProposals, map_correction,
                         proposals_to_label_map)
from .mask_pooling import mask_cell_weights, masks_to_scores, pool_features
from .sam import SAM_ARCHS, SAMImage, SAMMasks, SAMPredictor, build_sam_model, check_prompts
from .sam2 import SAM2_ARCHS, SAM2_MODEL_IDS, SAM2Image, SAM2Predictor, build_sam2_config
from .sam3 import SAM3_ARCHS, SAM3_MODEL_ID, SAM3Image, SAM3Text, SAM3TextPrompter, build_sam3_config

__all__ = ['CoarseRegions', 'GeneratedLabelMaps', 'MaskProposals', 'PrecomputedLabelMaps',
           'RegionPrompts', 'SAM2Image', 'SAM2Predictor', 'SAM2_ARCHS', 'SAM2_MODEL_IDS', 'SAM3Image',
           'SAM3Text', 'SAM3TextPrompter', 'SAM3_ARCHS', 'SAM3_MODEL_ID', 'SAMAutomaticProposals', 'SAMImage',
           'SAMMasks', 'SAMPredictor', 'SAM_ARCHS', 'SuperpixelProposals', 'build_region_prompts',
           'build_sam2_config', 'build_sam3_config', 'build_sam_model', 'check_prompts', 'find_coarse_regions',
           'map_correction', 'mask_cell_weights', 'masks_to_scores', 'pool_features', 'proposals_to_label_map']
