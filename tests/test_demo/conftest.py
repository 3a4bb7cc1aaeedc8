"""Fixtures of the web-demo tests: test files, in-process services and server, the CLI server."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
for path in (HERE.parents[1], HERE):  # demo.app from the checkout; demo_test_utils beside this file
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')

from demo_test_utils import (GRADIO_APP, REPO_ROOT, app_argv, free_port,  # noqa: E402
                             tiny_anomaly_cfg, tiny_segmentor_cfg, wait_for_http, write_blank_png,
                             write_config)


@pytest.fixture(scope='session')
def demo_files(tmp_path_factory):
    """Tiny configs and test images on disk: dict of paths."""
    root = tmp_path_factory.mktemp('demo_files')
    rng = np.random.default_rng(0)
    files = dict(segmentor=write_config(root / 'tiny_segmentor.py', tiny_segmentor_cfg()),
                 anomaly=write_config(root / 'tiny_anomaly.py', tiny_anomaly_cfg()),
                 image=root / 'image.png', large=root / 'large_2000x1500.png',
                 text=root / 'notes.png', huge=root / 'huge_20000x20000.png',
                 megapixel=root / 'megapixel.png')
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(files['image'])
    Image.fromarray(rng.integers(0, 256, (1500, 2000, 3), dtype=np.uint8)).save(files['large'])
    from skimage import data  # a photo: compresses like real uploads, unlike noise
    Image.fromarray(data.astronaut()).resize((1000, 1000), Image.BILINEAR).save(files['megapixel'])
    files['text'].write_text('This is a text file with a .png name.\n' * 20)
    write_blank_png(files['huge'], 20000, 20000)
    return files


@pytest.fixture(scope='session')
def gradio_app_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location('ovseg_gradio_app', GRADIO_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def services(gradio_app_module, demo_files):
    """DemoServices built by the CLI's own code path, with tiny random models (no Gradio needed)."""
    return gradio_app_module.build_services(gradio_app_module.parse_args(app_argv(demo_files)))


@pytest.fixture(scope='session')
def live_app(services):
    """The page served in this process on a free port: its URL."""
    pytest.importorskip('gradio', reason='gradio is not installed (pip install -e ".[demo]")')
    from demo.app.ui import build_app, launch_app
    app = build_app(services, examples=False)
    launch_app(app, services, port=free_port(), quiet=True, prevent_thread_lock=True)
    yield app.local_url
    app.close()


@pytest.fixture(scope='session')
def cli_server(demo_files, tmp_path_factory):
    """``python demo/gradio_app.py ...`` in a subprocess: (url, Popen, log file). Stopped at the end."""
    pytest.importorskip('gradio')
    port = free_port()
    log = tmp_path_factory.mktemp('server') / 'server.log'
    # glibc's malloc otherwise gives each server worker thread an arena and raises its mmap
    # threshold after large frees, so the resident size keeps rising in steps for hundreds of
    # requests without any leak; these settings make it follow live memory (see the load test).
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False', HF_HUB_OFFLINE='1',
               MALLOC_ARENA_MAX='2', MALLOC_MMAP_THRESHOLD_='1048576')
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, str(GRADIO_APP)] + app_argv(demo_files, port),
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))
    url = f'http://127.0.0.1:{port}/'
    try:
        wait_for_http(url, proc)
    except Exception:
        proc.kill()
        proc.wait()
        raise RuntimeError(f'demo server failed to start; log:\n{log.read_text()[-3000:]}')
    yield url, proc, log
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
