"""demo/anomaly_demo.py: main(argv) on a tiny random-weight WinCLIP+ config, zero- and few-shot, refusals."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovseg.testing import tiny_anomaly_cfg

DEMO = Path(__file__).resolve().parents[2] / 'demo' / 'anomaly_demo.py'


@pytest.fixture(scope='module')
def demo():
    spec = importlib.util.spec_from_file_location('anomaly_demo', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_zero_and_few_shot_heat_maps(demo, write_config, tmp_path, capsys):
    config = str(write_config(tiny_anomaly_cfg()))
    rng = np.random.default_rng(0)
    images = []
    for i, shape in enumerate(((70, 90, 3), (64, 64, 3))):
        images.append(tmp_path / f'img{i}.png')
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(images[-1])
    out = tmp_path / 'out'
    argv = [str(p) for p in images] + ['--config', config, '--class-name', 'bottle', '--out-dir', str(out)]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert 'zero-shot' in printed and "'bottle'" in printed and printed.count('score') == 2
    heat = np.asarray(Image.open(out / 'img0_anomaly.png'))
    assert heat.shape[0] == 70 and heat.shape[1] > 90 and heat.dtype == np.uint8
    assert demo.main(argv) == 1 and 'already exists' in capsys.readouterr().err
    assert demo.main(argv + ['--force', '--references', str(images[1])]) == 0
    assert '1-shot' in capsys.readouterr().out
    assert demo.main(argv + ['--force', '--references', str(tmp_path / 'missing.png')]) == 1
    assert 'error:' in capsys.readouterr().err


def test_zero_shot_config_refuses_references(demo, write_config, tmp_path, capsys):
    config = str(write_config(tiny_anomaly_cfg('WinCLIPHead')))
    image = tmp_path / 'a.png'
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert demo.main([str(image), '--config', config, '--references', str(image), '--out-dir', str(tmp_path)]) == 1
    assert 'does not use normal reference images' in capsys.readouterr().err
