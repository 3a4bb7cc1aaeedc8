"""tools/analysis/text_encoding_benchmark.py on the tiny CLIP: steps, cache reuse, JSON."""
import json
from ovseg.testing import load_tool



def _tool():
    return load_tool('analysis/text_encoding_benchmark')


def test_text_encoding_benchmark_reports_every_step(tmp_path, capsys):
    out = tmp_path / 'text.json'
    result = _tool().main(['--model', 'tiny', '--vocabulary', 'voc20', '--templates', 'vild14',
                           '--precision', 'fp32', '--full-context-sample', '16',
                           '--cache-dir', str(tmp_path / 'cache'), '--json', str(out)])
    assert result['classes'] == 20 and result['prompts'] == result['synonyms'] * 14
    assert result['disk_equals_first']
    assert result['repeat_memory']['wall_s'] < result['first']['wall_s']
    assert any((tmp_path / 'cache').iterdir())  # the first encoding was written to disk
    full = result['full_context_fp32']
    assert full['prompts'] == 16 and full['max_abs_diff_vs_trimmed'] < 1e-5
    assert json.loads(out.read_text())['prompts'] == result['prompts']
    assert 'first encoding' in capsys.readouterr().out
