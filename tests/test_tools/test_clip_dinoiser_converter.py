import importlib.util
from pathlib import Path

import pytest
import torch

import ovseg  # noqa: F401
from ovseg.registry import MODELS
from ovseg.testing import tiny_maskclip_cfg

SCRIPT = Path(__file__).resolve().parents[2] / 'tools' / 'model_converters' / 'clip_dinoiser_to_ovseg.py'


def _converter():
    spec = importlib.util.spec_from_file_location('clip_dinoiser_to_ovseg', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _original_layout(refiner, path):
    """Write a file laid out like the original repository's checkpoints/last.pt."""
    state = {k: v.clone() for k, v in refiner.state_dict().items()}
    state['clip_backbone.decode_head.proj.weight'] = torch.zeros(2, 2, 1, 1)
    torch.save({'epoch': 3, 'model_state_dict': state, 'optimizer_state_dict': {}}, path)


def test_roundtrip_loads_into_segmentor(tmp_path):
    cfg = tiny_maskclip_cfg(['a', 'b'], refiner=dict(type='CLIPDINOiserRefiner', in_channels=32,
                                                      proj_channels=8, token_layer='resblocks.-1.ln_2'))
    model = MODELS.build(cfg)
    torch.nn.init.normal_(model.refiner.obj_proj.weight)
    _original_layout(model.refiner, tmp_path / 'last.pt')
    assert _converter().main([str(tmp_path / 'last.pt'), str(tmp_path / 'out.pth')]) == 0
    ckpt = torch.load(tmp_path / 'out.pth', weights_only=True)
    fresh = MODELS.build(cfg)
    missing, unexpected = fresh.load_state_dict(ckpt['state_dict'], strict=False)
    assert not unexpected and all(k.startswith('backbone.') for k in missing)
    torch.testing.assert_close(fresh.refiner.obj_proj.weight, model.refiner.obj_proj.weight)


def test_wrong_file_names_the_keys(tmp_path):
    torch.save({'model_state_dict': {'something.weight': torch.zeros(1)}}, tmp_path / 'bad.pt')
    with pytest.raises(KeyError, match=r"obj_proj\.weight.*something\.weight"):
        _converter().main([str(tmp_path / 'bad.pt'), str(tmp_path / 'out.pth')])


def test_refuses_to_overwrite(tmp_path):
    model = MODELS.build(tiny_maskclip_cfg(['a'], refiner=dict(type='CLIPDINOiserRefiner', in_channels=32,
                                                                proj_channels=8)))
    _original_layout(model.refiner, tmp_path / 'last.pt')
    (tmp_path / 'out.pth').write_text('user file')
    assert _converter().main([str(tmp_path / 'last.pt'), str(tmp_path / 'out.pth')]) == 1
    assert (tmp_path / 'out.pth').read_text() == 'user file'
