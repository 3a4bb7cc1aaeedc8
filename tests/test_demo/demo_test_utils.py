"""Helpers of the web-demo tests: tiny configs, test files, servers, memory readings, artifacts."""
import os
import pprint
import socket
import time
import urllib.request
import zlib
from pathlib import Path

from ovseg.testing import tiny_anomaly_cfg as ovseg_tiny_anomaly_cfg
from ovseg.testing import tiny_maskclip_cfg

REPO_ROOT = Path(__file__).resolve().parents[2]
GRADIO_APP = REPO_ROOT / 'demo' / 'gradio_app.py'
ARTIFACTS = Path(os.environ.get('OVSEG_TEST_ARTIFACTS', REPO_ROOT / 'tests' / 'artifacts'))


def write_config(path, cfg):
    """Write a config dict as a Python config file; returns ``path``."""
    path.write_text(''.join(f'{key} = {pprint.pformat(value)}\n' for key, value in cfg.items()))
    return path


def tiny_segmentor_cfg():
    """Tiny random MaskCLIP (ViT, 64 px network input)."""
    return dict(model=tiny_maskclip_cfg(),
                test_pipeline=[dict(type='Resize', scale=(2048, 64), keep_ratio=True),
                               dict(type='PackSegInputs')])


def tiny_anomaly_cfg():
    """Tiny random WinCLIP+ (ViT, 64 px input, 4x4 patches, windows 2 and 3): zero-shot without
    reference images, few-shot with them."""
    return ovseg_tiny_anomaly_cfg('WinCLIPFewShotHead', scales=(2, 3))


def write_blank_png(path, width, height):
    """A valid all-black 8-bit grayscale PNG, streamed (no width x height array in memory)."""
    def chunk(kind, data):
        return (len(data).to_bytes(4, 'big') + kind + data
                + zlib.crc32(kind + data).to_bytes(4, 'big'))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0 + black pixels
    parts = [compressor.compress(row * 100) for _ in range(height // 100)]
    parts += [compressor.compress(row * (height % 100)), compressor.flush()]
    header = width.to_bytes(4, 'big') + height.to_bytes(4, 'big') + bytes([8, 0, 0, 0, 0])
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', b''.join(parts))
                + chunk(b'IEND', b''))


def app_argv(files, port=None, extra=()):
    """Command-line arguments of the demo with tiny random models."""
    argv = ['--config', str(files['segmentor']), '--random-weights', '--sam-arch', 'tiny',
            '--sam-image-size', '256', '--anomaly-config', str(files['anomaly']), '--no-examples']
    if port is not None:
        argv += ['--host', '127.0.0.1', '--port', str(port)]
    return argv + list(extra)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_http(url, proc=None, timeout=240):
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f'the demo server exited with code {proc.returncode}')
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f'{url} did not answer within {timeout} s')


def rss_mb(pid='self'):
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError('no VmRSS')


def artifacts_dir():
    """tests/artifacts (or $OVSEG_TEST_ARTIFACTS), ignored by git through its own .gitignore."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ignore = ARTIFACTS / '.gitignore'
    if not ignore.exists():
        ignore.write_text('*\n')
    return ARTIFACTS
