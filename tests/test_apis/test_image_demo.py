"""demo/image_demo.py: main(argv) on a tiny random-weight config, refusals, the no-weights exit."""
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg.models.backbones import open_clip_loader

DEMO = Path(__file__).resolve().parents[2] / 'demo' / 'image_demo.py'


@pytest.fixture(scope='module')
def demo():
    spec = importlib.util.spec_from_file_location('image_demo', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_image_exists(demo):
    image = Image.open(demo.DEFAULT_IMAGE)
    assert image.format == 'JPEG' and image.size == (512, 512)


def test_random_weights_writes_overlay_and_refuses_overwrite(demo, tiny_cfg, write_config, tmp_path,
                                                            capsys):
    config = str(write_config(tiny_cfg()))
    out = tmp_path / 'sub' / 'overlay.png'
    argv = ['--config', config, '--random-weights', '--out', str(out)]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert 'random weights' in printed and str(out.resolve()) in printed
    for name in ('astronaut', 'flag', 'space shuttle', 'helmet', 'wall'):  # default vocabulary
        assert name in printed
    overlay = np.asarray(Image.open(out))
    assert overlay.shape == (512, 512, 3) and overlay.dtype == np.uint8
    stamp = out.stat().st_mtime_ns
    assert demo.main(argv) == 1
    assert 'already exists' in capsys.readouterr().err and out.stat().st_mtime_ns == stamp
    assert demo.main(argv + ['--force', '--vocab', 'sky, person|man']) == 0
    assert 'person' in capsys.readouterr().out


def test_no_weights_exits_2_quickly(demo, tiny_cfg, write_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(open_clip_loader, '_hub_reachable', lambda *args, **kwargs: False)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    cfg = tiny_cfg()
    cfg['model']['backbone'] = dict(type='OpenCLIPBackbone', model_name='ViT-B-16',
                                    pretrained='openai', cache_dir=str(tmp_path / 'empty_cache'))
    start = time.monotonic()
    code = demo.main(['--config', str(write_config(cfg)), '--out', str(tmp_path / 'o.png')])
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert code == 2
    assert 'not in the local cache' in err and '--checkpoint PATH, or --random-weights' in err
    assert 'Traceback' not in err and not (tmp_path / 'o.png').exists()


def test_bad_inputs_exit_1(demo, tiny_cfg, write_config, tmp_path, capsys):
    config = str(write_config(tiny_cfg()))
    bad = tmp_path / 'bad.png'
    bad.write_text('not an image')
    argv = ['--config', config, '--random-weights', '--out', str(tmp_path / 'a.png')]
    assert demo.main([str(bad)] + argv) == 1
    assert 'bad.png' in capsys.readouterr().err
    assert demo.main(argv + ['--vocab', 'cat, cat']) == 1
    assert 'duplicate' in capsys.readouterr().err


def test_format_shares(demo):
    table = demo.format_shares({'cat': 0.25, 'dog': 0.75, 'grass': 0.0})
    lines = table.splitlines()
    assert lines[2].startswith('dog') and '75.0%' in lines[2] and lines[-1].startswith('grass')
