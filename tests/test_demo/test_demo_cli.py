"""The demo scripts' command lines: --help without the model stack, inputs checked before a model
loads, the click mode only when asked for, a line confirming a loaded checkpoint."""
import importlib.util
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from demo_test_utils import REPO_ROOT, app_argv

SCRIPTS = ('image_demo.py', 'anomaly_demo.py', 'gradio_app.py')
HEAVY = ('torch', 'ovseg', 'gradio', 'open_clip', 'mmseg')


def _run(script, *argv):
    """Run a demo script with ``-X importtime``: (exit code, stdout, stderr, imported modules)."""
    proc = subprocess.run([sys.executable, '-X', 'importtime', str(REPO_ROOT / 'demo' / script),
                           *map(str, argv)], capture_output=True, text=True, timeout=120,
                          cwd=str(REPO_ROOT))
    modules, errors = set(), []
    for line in proc.stderr.splitlines():
        if line.startswith('import time:'):
            modules.add(line.rsplit('|', 1)[-1].strip())
        else:
            errors.append(line)
    return proc.returncode, proc.stdout, '\n'.join(errors), modules


def _heavy(modules):
    return sorted(m for m in modules if m.split('.')[0] in HEAVY)


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_does_not_import_the_model_stack(script):
    code, out, err, modules = _run(script, '--help')
    assert code == 0 and 'usage:' in out, err
    assert 'argparse' in modules  # the import log was read
    assert _heavy(modules) == []


def test_gradio_help_states_the_concurrency_bound_and_the_sam_flag():
    _, out, _, _ = _run('gradio_app.py', '--help')
    text = ' '.join(out.split())
    assert 'N = min(CPU cores, budget // (2 x peak))' in text and '--max-concurrent' in text
    assert '--sam-random-weights' in text and '--random-weights alone leaves the mode off' in text


@pytest.mark.parametrize('script, argv', [
    ('image_demo.py', ['missing.jpg']),
    ('anomaly_demo.py', ['missing.png', '--class-name', 'bottle']),
])
def test_a_missing_image_is_reported_without_loading_anything(script, argv, tmp_path):
    code, _, err, modules = _run(script, *[str(tmp_path / a) if a.startswith('missing') else a
                                           for a in argv])
    assert code == 1 and 'no such file' in err and 'missing' in err
    assert _heavy(modules) == []


@pytest.fixture(scope='module')
def image_demo():
    spec = importlib.util.spec_from_file_location('image_demo_cli', REPO_ROOT / 'demo' / 'image_demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unreadable_image_is_reported_before_the_model_loads(image_demo, demo_files, monkeypatch,
                                                                capsys):
    import ovseg.apis

    def no_model(*args, **kwargs):
        raise AssertionError('the model was built before the image was read')

    monkeypatch.setattr(ovseg.apis, 'OVSegInferencer', no_model)
    out = demo_files['image'].parent / 'never.png'
    assert image_demo.main([str(demo_files['text']), '--out', str(out), '--random-weights']) == 1
    err = capsys.readouterr().err
    assert 'notes.png is not an image' in err and 'AssertionError' not in err


def test_click_mode_only_when_asked_for(gradio_app_module, demo_files):
    base = [a for a in app_argv(demo_files) if a != '--sam-random-weights']
    services = gradio_app_module.build_services(gradio_app_module.parse_args(
        base + ['--max-concurrent', '1']))
    assert not services.click_available
    assert '--sam-checkpoint sam_vit_b_01ec64.pth' in services.sam_reason
    assert '--sam-random-weights' in services.sam_reason
    args = gradio_app_module.parse_args(['--sam-random-weights', '--sam-arch', 'tiny',
                                         '--sam-image-size', '256'])
    factory, reason = gradio_app_module.sam_factory(args)  # without --random-weights
    assert factory is not None and reason == ''
    with pytest.raises(ValueError, match='exclude each other'):
        gradio_app_module.sam_factory(gradio_app_module.parse_args(
            ['--sam-random-weights', '--sam-checkpoint', str(demo_files['image'])]))


def _checkpoints(services, folder):
    """A full-model checkpoint and a bare open_clip state dict of the tiny model."""
    state = services.pool.get().model.state_dict()
    full, clip = folder / 'tiny.pth', folder / 'tiny_clip.pth'
    torch.save(state, full)
    prefix = 'backbone.clip.'
    torch.save({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, clip)
    return full, clip


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def take(self, capfd):
        """ovseg's log lines (mmengine's logger) and the demo's printed lines since the last take."""
        text = '\n'.join(self.lines) + '\n' + ''.join(capfd.readouterr())
        self.lines = []
        return text


@pytest.fixture
def ovseg_log():
    from mmengine.logging import MMLogger
    logger, handler = MMLogger.get_current_instance(), _Lines()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_loaded_checkpoints_are_confirmed_once(gradio_app_module, image_demo, services, demo_files,
                                               tmp_path, capfd, ovseg_log):
    """ovseg confirms a full-model checkpoint itself; the demo adds its line only where ovseg is silent
    (a bare open_clip state dict), so each load is confirmed exactly once."""
    full, clip = _checkpoints(services, tmp_path)
    image = tmp_path / 'image.png'
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(image)
    argv = [str(image), '--config', str(demo_files['segmentor']), '--vocab', 'cat, dog', '--force',
            '--out', str(tmp_path / 'out.png')]
    for ckpt in (full, clip):
        assert image_demo.main(argv + ['--checkpoint', str(ckpt)]) == 0
        out = ovseg_log.take(capfd)
        assert len(re.findall(rf'Loaded .*{re.escape(str(ckpt))}', out)) == 1, out
    assert f'Loaded checkpoint {clip} into tiny_segmentor.py (weights_only' in out
    for ckpt in (full, clip):
        gradio_app_module.build_services(gradio_app_module.parse_args(
            ['--config', str(demo_files['segmentor']), '--checkpoint', str(ckpt), '--anomaly-config',
             'none', '--max-concurrent', '1']))
        out = ovseg_log.take(capfd)
        assert len(re.findall(rf'Loaded .*{re.escape(str(ckpt))}', out)) == 1, out
    assert f'Loaded checkpoint {clip} into tiny_segmentor (weights_only' in out


def test_open_clip_random_init_warning_is_dropped_only_with_a_checkpoint(caplog):
    """The real open_clip warning (a small architecture built without weights), with and without
    a checkpoint: the message is kept when the weights really are random."""
    open_clip = pytest.importorskip('open_clip')
    from demo.app.checkpoint_note import OPEN_CLIP_RANDOM_INIT, building

    def warnings():
        return [r.getMessage() for r in caplog.records if OPEN_CLIP_RANDOM_INIT in r.getMessage()]

    with caplog.at_level(logging.WARNING):
        with building(None):
            open_clip.create_model('ViT-S-32', pretrained=None)
        assert len(warnings()) == 1  # random weights: the warning stays
        with building('weights.pth'):
            open_clip.create_model('ViT-S-32', pretrained=None)
        assert len(warnings()) == 1
        logging.getLogger().warning('another warning')
    assert 'another warning' in caplog.text and logging.getLogger().filters == []
