"""Every command-line tool answers ``--help`` without importing the model stack (ovseg, mmseg, open_clip, timm,
mmengine's runner; torch alone is allowed: a fast answer,
and argument errors before any model loads)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = sorted(str(p.relative_to(REPO)) for p in [*REPO.glob('tools/**/*.py'), *REPO.glob('demo/*.py')]
               if 'if __name__ ==' in p.read_text())
PROBE = '''
import runpy, sys
sys.argv = [{path!r}, '--help']
try:
    runpy.run_path({path!r}, run_name='__main__')
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ('mmseg', 'ovseg', 'open_clip', 'timm', 'mmengine.runner') if m in sys.modules)
print('HEAVY', heavy, 'EXIT', code)
'''


@pytest.mark.parametrize('tool', TOOLS)
def test_help_does_not_import_the_model_stack(tool):
    path = str(REPO / tool)
    proc = subprocess.run([sys.executable, '-c', PROBE.format(path=path)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    last = proc.stdout.strip().splitlines()[-1]
    assert last == 'HEAVY [] EXIT 0', f'{tool}: {last}\n{proc.stderr[-2000:]}'
    assert 'usage:' in proc.stdout
