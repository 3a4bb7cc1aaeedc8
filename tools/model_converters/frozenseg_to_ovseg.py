"""Convert a released FrozenSeg checkpoint (detectron2 parameter names) into ovseg's ``FrozenSegSegmentor`` layout.

FrozenSeg is FC-CLIP plus a SAM branch, so every FC-CLIP name maps as ``fcclip_to_ovseg.py`` maps it; the
FrozenSeg-only names are the frozen SAM (``sam.{image_encoder,prompt_encoder,mask_decoder}.*`` ->
``sam.model.*``), the pixel decoder's SAM branch (``sem_seg_head.pixel_decoder.fpn3.*`` -> ``sam_branch.fpn.*``,
``...sam_transformer.level_embed`` / ``.encoder.layers.<i>.*`` -> ``sam_branch.level_embed`` /
``sam_branch.encoder_layers.<i>.*``) and the decoder's feature injectors
(``sem_seg_head.predictor.transformer_cross_attention_layers_sam.<i>.{multihead_attn,norm}.*`` ->
``injector.feature_injectors.<i>.{attn,norm}.*``, keyed by decoder layer). An unknown or missing key stops
the conversion with its name (exit code 2).

Usage::

    python tools/model_converters/frozenseg_to_ovseg.py frozenseg_convnext_large.pth frozenseg_ovseg.pth
    python tools/test.py configs/frozenseg/frozenseg_convnext-l_ade150.py frozenseg_ovseg.pth
"""
import importlib.util
import sys
from pathlib import Path


def _fcclip_converter():
    path = Path(__file__).resolve().parent / 'fcclip_to_ovseg.py'
    spec = importlib.util.spec_from_file_location('ovseg_fcclip_to_ovseg', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FCCLIP = _fcclip_converter()
_PD = r'sem_seg_head\.pixel_decoder\.'
RULES = (
    (r'sam\.(image_encoder|prompt_encoder|mask_decoder)\.(.+)', r'sam.model.\1.\2'),
    (_PD + r'fpn3\.(\d+)\.(weight|bias)', r'sam_branch.fpn.\1.\2'),
    (_PD + r'sam_transformer\.level_embed', r'sam_branch.level_embed'),
    (_PD + r'sam_transformer\.encoder\.layers\.(\d+)\.(.+)', r'sam_branch.encoder_layers.\1.\2'),
    (r'sem_seg_head\.predictor\.transformer_cross_attention_layers_sam\.(\d+)\.multihead_attn\.(.+)',
     r'injector.feature_injectors.\1.attn.\2'),
    (r'sem_seg_head\.predictor\.transformer_cross_attention_layers_sam\.(\d+)\.norm\.(.+)',
     r'injector.feature_injectors.\1.norm.\2'),
) + FCCLIP.RULES
DROPPED = FCCLIP.DROPPED
REQUIRED = FCCLIP.REQUIRED + (
    r'sam\.model\.image_encoder\.patch_embed\.proj\.weight', r'sam\.model\.image_encoder\.pos_embed',
    r'sam\.model\.image_encoder\.neck\.3\.weight', r'sam_branch\.fpn\.0\.weight', r'sam_branch\.level_embed',
    r'sam_branch\.encoder_layers\.0\..+', r'injector\.feature_injectors\.0\..+',
)
FAMILIES = FCCLIP.FAMILIES + (r'sam_branch\.encoder_layers', r'injector\.feature_injectors',
                              r'sam\.model\.image_encoder\.blocks')


def convert_frozenseg_state_dict(state):
    """Rename a FrozenSeg state dict; returns (renamed dict, sorted unmatched original keys)."""
    return FCCLIP.convert_state_dict(state, RULES, DROPPED)


def main(argv=None):
    return FCCLIP.run(argv, __doc__.split('\n')[0], convert_frozenseg_state_dict, REQUIRED, 'frozenseg',
                      FAMILIES)


if __name__ == '__main__':
    sys.exit(main())
