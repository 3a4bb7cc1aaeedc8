"""tools/analysis/attention_cost.py on tiny MaskCLIP / SCLIP / ClearCLIP / NACLIP configs."""
import json
import pprint
from pathlib import Path

from mmengine.config import Config

from ovseg.testing import load_tool, tiny_clip_arch, tiny_maskclip_cfg

REPO = Path(__file__).resolve().parents[2]


def _write(path, model):
    path.write_text(f'model = {pprint.pformat(model)}\n')
    return str(path)


def _tiny_query(method):
    model = Config.fromfile(str(REPO / f'configs/{method}/{method}_vit-b16_ade150.py')).model.to_dict()
    model['backbone'].update(arch=tiny_clip_arch('vit'), pretrained=None, model_name='custom')
    model['text_classifier'].update(templates='single', cache_dir=None)
    model['vocabulary'] = ['cat', 'dog', 'grass']
    return model


def test_attention_cost_on_tiny_configs(tmp_path, capsys):
    tool = load_tool('analysis/attention_cost')
    configs = [f"maskclip={_write(tmp_path / 'maskclip.py', tiny_maskclip_cfg(mode='slide'))}"]
    configs += [f'{m}={_write(tmp_path / f"{m}.py", _tiny_query(m))}' for m in ('sclip', 'clearclip', 'naclip')]
    out = tmp_path / 'cost.json'
    result = tool.main(['--configs', *configs, '--whole', '64', '64', '--slide', '64', '96', '--crop', '64',
                        '--stride', '32', '--repeats', '1', '--precision', 'fp32', '--json', str(out)])
    entry = result['precisions']['fp32']
    names = {f'{m} {mode}' for m in ('maskclip', 'sclip', 'clearclip', 'naclip', 'naclip + pamr')
             for mode in ('whole', 'slide')}
    assert set(entry['median_wall_s']) == names and all(v > 0 for v in entry['median_wall_s'].values())
    assert entry['vs_maskclip']['maskclip whole'] == dict(wall=0.0, cpu=0.0)
    assert json.loads(out.read_text())['crop'] == 64
    assert '| fp32 | sclip |' in capsys.readouterr().out
