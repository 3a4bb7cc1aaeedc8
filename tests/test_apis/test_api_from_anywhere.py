"""The README's Python snippet works from any folder, in a fresh interpreter, beside a checkout named ovseg.

``git clone`` names the checkout ``ovseg``; a script next to it used to import that folder as an empty
namespace package (setuptools' default editable finder loses to it), so nothing registered. The install
now puts the project root on ``sys.path`` (setup.cfg ``package_dir``), and config paths relative to the
repository, or config names, are found from anywhere (:mod:`ovseg.configs`).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovseg.configs import find_config, list_configs

REPO = Path(__file__).resolve().parents[2]
SNIPPET = '''
import json, ovseg
from ovseg.apis import OVSegInferencer

inferencer = OVSegInferencer('configs/maskclip/maskclip_vit-b16_ade150.py', random_weights=True,
                             cfg_options={'model.text_classifier.templates': 'single'})
result = inferencer(IMAGE, vocabulary=['astronaut|person', 'flag', 'rocket', 'sky'], return_overlay=True)
print(json.dumps(dict(package=ovseg.__file__, mask=list(result['mask'].shape), shares=sorted(result['shares']),
                      overlay=list(result['overlay'].shape))))
'''


def test_readme_snippet_from_a_folder_beside_a_checkout_named_ovseg(tmp_path):
    (tmp_path / 'ovseg').symlink_to(REPO, target_is_directory=True)  # the clone, named as git names it
    script = tmp_path / 'my_script.py'
    script.write_text(f'IMAGE = {str(REPO / "demo/assets/astronaut.jpg")!r}\n' + SNIPPET)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['HF_HUB_OFFLINE'] = '1'
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out['package']).resolve() == (REPO / 'ovseg' / '__init__.py').resolve()
    assert out['mask'] == [512, 512] and out['overlay'][:2] == [512, 512]
    assert out['shares'] and set(out['shares']) <= {'astronaut', 'flag', 'rocket', 'sky'}


def test_configs_found_by_path_or_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    by_path = find_config('configs/maskclip/maskclip_vit-b16_ade150.py')
    assert Path(by_path).resolve() == (REPO / 'configs/maskclip/maskclip_vit-b16_ade150.py').resolve()
    assert find_config('maskclip_vit-b16_ade150') == by_path == find_config('maskclip_vit-b16_ade150.py')
    assert 'fcclip_ade' in list_configs() and not any('_base_' in str(p) for p in list_configs().values())
    with pytest.raises(FileNotFoundError, match=r"did you mean \['maskclip_vit-b16_ade150'"):
        find_config('maskclip_vit-b16_ade15')
