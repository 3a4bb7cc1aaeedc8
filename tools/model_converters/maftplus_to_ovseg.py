"""Convert a released MAFT+ checkpoint (detectron2 parameter names) into ovseg's ``MAFTPlusSegmentor`` layout.

MAFT+ is FC-CLIP's model (every FC-CLIP name maps as ``fcclip_to_ovseg.py`` maps it; the CLIP trunk is
fine-tuned, so its weights come from this file) plus the content-dependent transfer
(``cdt.cross_atten.{multihead_attn,norm,MLP}.*`` -> ``cdt.{attn,norm,mlp}.*``). The frozen teacher CLIP of
representation compensation (``backbone_t.clip_model.*``, training only, the pretrained CLIP) is dropped
unless ``--keep-teacher`` maps it to ``teacher.clip.*`` (for a training config with a teacher). An unknown
or missing key stops the conversion with its name (exit code 2).

Usage::

    python tools/model_converters/maftplus_to_ovseg.py maftp_l.pth maftp_l_ovseg.pth
    python tools/test.py configs/maftplus/maftplus_convnext-l_ade847.py maftp_l_ovseg.pth
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
RULES = (
    (r'cdt\.cross_atten\.multihead_attn\.(.+)', r'cdt.attn.\1'),
    (r'cdt\.cross_atten\.norm\.(weight|bias)', r'cdt.norm.\1'),
    (r'cdt\.cross_atten\.MLP\.(weight|bias)', r'cdt.mlp.\1'),
) + FCCLIP.RULES
TEACHER_RULE = (r'backbone_t\.clip_model\.(.+)', r'teacher.clip.\1')
DROPPED = FCCLIP.DROPPED
REQUIRED = FCCLIP.REQUIRED + (r'cdt\.attn\.in_proj_weight', r'cdt\.attn\.out_proj\.weight', r'cdt\.norm\.weight',
                              r'cdt\.mlp\.weight')


def convert_maftplus_state_dict(state, keep_teacher=False):
    """Rename a MAFT+ state dict; returns (renamed dict, sorted unmatched original keys)."""
    if keep_teacher:
        return FCCLIP.convert_state_dict(state, (TEACHER_RULE,) + RULES, DROPPED)
    teacher = [k for k in state if FCCLIP.rename(k, (TEACHER_RULE,)) is not None]
    return FCCLIP.convert_state_dict(state, RULES, tuple(DROPPED) + tuple(teacher))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    keep = '--keep-teacher' in argv
    argv = [a for a in argv if a != '--keep-teacher']
    return FCCLIP.run(argv, __doc__.split('\n')[0] + ' (--keep-teacher: keep backbone_t as teacher.*)',
                      lambda state: convert_maftplus_state_dict(state, keep), REQUIRED, 'maftplus')


if __name__ == '__main__':
    sys.exit(main())
