"""ovseg as an mmseg plugin: a downstream config imports it through ``custom_imports`` only.

The config is read in a fresh interpreter so that ``ovseg`` is imported by ``Config.fromfile`` (not by
this test), its modules are built by plain type names from ``mmseg.registry.MODELS`` and run on an image.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DOWNSTREAM_CONFIG = """\
custom_imports = dict(imports=['ovseg'], allow_failed_imports=False)
model = dict(
    type='OVSegmentor',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323], bgr_to_rgb=True),
    backbone=dict(type='OpenCLIPBackbone', arch=dict(
        embed_dim=32,
        vision_cfg=dict(image_size=64, layers=2, width=32, head_width=16, patch_size=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))),
    text_classifier=dict(type='OVTextClassifier', templates='single', cache_dir=None),
    head=dict(type='OVSimilarityHead'),
    vocabulary=['sky', 'person|man|woman', 'tree'],
    test_cfg=dict(mode='slide', crop_size=64, stride=32))
"""

SCRIPT = textwrap.dedent("""\
    import sys
    import torch
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    assert 'ovseg' not in sys.modules
    cfg = Config.fromfile(sys.argv[1])
    assert 'ovseg' in sys.modules, 'custom_imports did not import ovseg'
    model = MODELS.build(cfg.model).eval()
    image = torch.randint(0, 256, (3, 80, 112), dtype=torch.uint8)
    meta = dict(img_shape=(80, 112), ori_shape=(80, 112))
    out = model.test_step(dict(inputs=[image], data_samples=[SegDataSample(metainfo=meta)]))
    pred = out[0].pred_sem_seg.data
    assert tuple(pred.shape) == (1, 80, 112), pred.shape
    assert int(pred.max()) < 3 and out[0].seg_logits.data.shape[0] == 3
    print('PLUGIN OK', type(model).__module__)
""")


def test_downstream_config_builds_and_runs(tmp_path):
    config = tmp_path / 'downstream_config.py'
    config.write_text(DOWNSTREAM_CONFIG)
    script = tmp_path / 'run_plugin.py'
    script.write_text(SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE='1',
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run([sys.executable, str(script), str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'PLUGIN OK ovseg.models.segmentors' in proc.stdout
