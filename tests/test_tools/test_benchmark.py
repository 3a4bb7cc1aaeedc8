"""tools/analysis/benchmark.py on the tiny random CLIP segmentor (whole and slide inference)."""
import json

import pytest

from ovseg.testing import load_tool, tiny_maskclip_cfg



@pytest.fixture(scope='module')
def benchmark():
    return load_tool('analysis/benchmark')


@pytest.fixture
def config(tmp_path):
    model = tiny_maskclip_cfg(('cat', 'dog', 'grass'))
    model['backbone']['pretrained'] = 'openai'  # --random-weights must drop it (nothing is downloaded)
    path = tmp_path / 'tiny_bench.py'
    path.write_text("custom_imports = dict(imports=['ovseg'], allow_failed_imports=False)\n"
                    f'model = {model!r}\n')
    return str(path)


@pytest.mark.parametrize('mode, shape', [('whole', (64, 64)), ('slide', (64, 128))])
def test_benchmark_reports_figures(benchmark, config, tmp_path, capsys, mode, shape):
    out = tmp_path / 'bench.json'
    result = benchmark.main([config, '--random-weights', '--mode', mode, '--crop', '64', '--stride', '32',
                             '--shape', *map(str, shape), '--repeats', '3', '--warmup', '1',
                             '--json', str(out)])
    printed = capsys.readouterr().out
    for key in ('images_per_s', 'latency_ms_p50', 'latency_ms_p90', 'peak_memory_mib', 'stages_ms.backbone'):
        assert key in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result['mode'] == mode and result['shape'] == list(shape)
    assert result['images_per_s'] > 0 and result['peak_memory_mib'] > 0
    assert result['latency_ms_min'] <= result['latency_ms_p50'] <= result['latency_ms_p90']
    stages = result['stages_ms']
    assert stages['backbone'] > 0 and stages['head_rules'] > 0
    assert sum(stages.values()) == pytest.approx(result['latency_ms_mean'], rel=1e-6)
