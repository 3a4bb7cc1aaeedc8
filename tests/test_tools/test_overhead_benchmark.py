"""tools/analysis/overhead_benchmark.py on tiny MaskCLIP / CLIP-DINOiser configs."""
import json
import pprint

import pytest

from ovseg.testing import load_tool, tiny_maskclip_cfg



def _write(path, model):
    path.write_text(f'model = {pprint.pformat(model)}\n')
    return str(path)


def test_overhead_benchmark_on_tiny_configs(tmp_path, capsys):
    tool = load_tool('analysis/overhead_benchmark')
    maskclip = _write(tmp_path / 'maskclip.py', tiny_maskclip_cfg(mode='slide'))
    dinoiser = _write(tmp_path / 'dinoiser.py', tiny_maskclip_cfg(mode='slide', refiner=dict(
        type='CLIPDINOiserRefiner', in_channels=32, proj_channels=8, token_layer='resblocks.-2.ln_2')))
    out = tmp_path / 'overhead.json'
    result = tool.main(['--maskclip', maskclip, '--dinoiser', dinoiser, '--whole', '64', '64',
                        '--slide', '64', '128', '--repeats', '2', '--json', str(out)])
    names = {'vit', 'maskclip whole', 'clip_dinoiser whole', 'maskclip slide', 'clip_dinoiser slide'}
    for precision in ('fp32', 'bf16'):
        entry = result['precisions'][precision]
        med, low = entry['median_s'], entry['min_s']
        assert set(med) == set(low) == names and all(v > 0 for v in med.values())
        assert all(low[name] <= med[name] for name in names)  # the fastest round is not above the median
        # the reported overheads are the ratios of the medians they name, whatever the timings
        assert entry['maskclip_vs_vit'] == pytest.approx(med['maskclip whole'] / med['vit'] - 1)
        assert entry['dinoiser_vs_maskclip_whole'] == pytest.approx(
            med['clip_dinoiser whole'] / med['maskclip whole'] - 1)
        assert entry['dinoiser_vs_maskclip_slide'] == pytest.approx(
            med['clip_dinoiser slide'] / med['maskclip slide'] - 1)
    fp32, bf16 = (result['precisions'][p]['median_s'] for p in ('fp32', 'bf16'))
    assert result['bf16_speedup'] == pytest.approx({name: fp32[name] / bf16[name] for name in names})
    assert json.loads(out.read_text())['repeats'] == 2
    assert 'MaskCLIP vs ViT' in capsys.readouterr().out
