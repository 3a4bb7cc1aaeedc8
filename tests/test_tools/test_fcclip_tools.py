"""FC-CLIP end to end: an original-named checkpoint of the tiny model -> converter -> tools/test.py on
configs/fcclip_ade.py with --cfg-options switching to the tiny model and a generated two-image ADE20K
panoptic dataset; it prints mIoU, PQ and AP."""
import re

import numpy as np
import pytest
import torch

import ovseg.models.fcclip  # noqa: F401  registers FC-CLIP
from ovseg.registry import MODELS
from ovseg.testing.fcclip import tiny_fcclip_cfg
from ovseg.testing.panoptic_data import make_ade_panoptic_layout
from ovseg.testing import load_tool

CLASSES = ['cat', 'dog', 'grass']




# ovseg name -> detectron2 name, written independently of the converter's rules
TO_ORIGINAL = (
    (r'backbone\.clip\.(.+)', r'backbone.clip_model.\1'),
    (r'pixel_decoder\.level_embed', r'sem_seg_head.pixel_decoder.transformer.level_embed'),
    (r'pixel_decoder\.encoder_layers\.(.+)', r'sem_seg_head.pixel_decoder.transformer.encoder.layers.\1'),
    (r'pixel_decoder\.lateral_convs\.(\d+)\.conv\.weight', r'sem_seg_head.pixel_decoder.adapter_<\1>.weight'),
    (r'pixel_decoder\.lateral_convs\.(\d+)\.norm\.(.+)', r'sem_seg_head.pixel_decoder.adapter_<\1>.norm.\2'),
    (r'pixel_decoder\.output_convs\.(\d+)\.conv\.weight', r'sem_seg_head.pixel_decoder.layer_<\1>.weight'),
    (r'pixel_decoder\.output_convs\.(\d+)\.norm\.(.+)', r'sem_seg_head.pixel_decoder.layer_<\1>.norm.\2'),
    (r'pixel_decoder\.(.+)', r'sem_seg_head.pixel_decoder.\1'),
    (r'transformer_decoder\.self_attn_layers\.(\d+)\.attn\.(.+)',
     r'sem_seg_head.predictor.transformer_self_attention_layers.\1.self_attn.\2'),
    (r'transformer_decoder\.self_attn_layers\.(\d+)\.norm\.(.+)',
     r'sem_seg_head.predictor.transformer_self_attention_layers.\1.norm.\2'),
    (r'transformer_decoder\.cross_attn_layers\.(\d+)\.attn\.(.+)',
     r'sem_seg_head.predictor.transformer_cross_attention_layers.\1.multihead_attn.\2'),
    (r'transformer_decoder\.cross_attn_layers\.(\d+)\.norm\.(.+)',
     r'sem_seg_head.predictor.transformer_cross_attention_layers.\1.norm.\2'),
    (r'transformer_decoder\.ffn_layers\.(.+)', r'sem_seg_head.predictor.transformer_ffn_layers.\1'),
    (r'transformer_decoder\.class_head\.pool_proj\.(.+)', r'sem_seg_head.predictor._mask_pooling_proj.\1'),
    (r'transformer_decoder\.class_head\.(.+)', r'sem_seg_head.predictor.\1'),
    (r'transformer_decoder\.(.+)', r'sem_seg_head.predictor.\1'),
    (r'void_embedding\.weight', r'void_embedding.weight'),
)


def to_original(name):
    for pattern, repl in TO_ORIGINAL:
        if re.fullmatch(pattern, name):
            new = re.sub(pattern, repl, name)
            return re.sub(r'<(\d+)>', lambda m: str(int(m.group(1)) + 1), new)
    raise KeyError(name)


@pytest.fixture(scope='module')
def tiny_model():
    model = MODELS.build(tiny_fcclip_cfg(CLASSES, thing_classes=[0, 1]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights differ from a fresh build
    return model.eval()


def _original_checkpoint(model, path):
    state = {to_original(k): v.clone() for k, v in model.state_dict().items()}
    state['criterion.empty_weight'] = torch.ones(4)
    torch.save({'model': state, 'iteration': 10}, path)
    return state


def test_converter_maps_original_names(tiny_model, tmp_path):
    conv = load_tool('model_converters/fcclip_to_ovseg.py')
    state = _original_checkpoint(tiny_model, tmp_path / 'orig.pth')
    assert any(k.startswith('sem_seg_head.pixel_decoder.adapter_1.') for k in state)
    assert conv.main([str(tmp_path / 'orig.pth'), str(tmp_path / 'out.pth')]) == 0
    ckpt = torch.load(tmp_path / 'out.pth', weights_only=True)
    fresh = MODELS.build(tiny_fcclip_cfg(CLASSES, thing_classes=[0, 1]))
    fresh.load_state_dict(ckpt['state_dict'], strict=True)
    loaded = fresh.state_dict()
    for key, value in tiny_model.state_dict().items():  # a bijection: every tensor back in its place
        assert torch.equal(loaded[key], value), key
    extra = {**state, 'sem_seg_head.extra.weight': torch.zeros(1)}
    converted, unmatched = conv.convert_fcclip_state_dict(extra)
    assert unmatched == ['sem_seg_head.extra.weight'] and 'criterion.empty_weight' not in converted
    torch.save({'model': extra}, tmp_path / 'bad.pth')
    assert conv.main([str(tmp_path / 'bad.pth'), str(tmp_path / 'bad_out.pth')]) == 2


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """Two generated images in the ADE20K panoptic layout that configs/fcclip_ade.py reads."""
    return make_ade_panoptic_layout(tmp_path_factory.mktemp('ADEChallengeData2016'), num_images=2)


def _flatten(prefix, value):
    """Nested dict -> ['a.b=value', ...] for --cfg-options."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f'{prefix}.{k}', v)]
    if isinstance(value, (list, tuple)):
        return [f'{prefix}=[{",".join(str(v) for v in value)}]']
    return [f'{prefix}={value}']


def test_tools_test_runs_fcclip_ade_with_tiny_model(tiny_model, data_root, tmp_path, capfd):
    conv = load_tool('model_converters/fcclip_to_ovseg.py')
    _original_checkpoint(tiny_model, tmp_path / 'orig.pth')
    assert conv.main([str(tmp_path / 'orig.pth'), str(tmp_path / 'ckpt.pth')]) == 0
    tiny = tiny_fcclip_cfg(CLASSES, thing_classes=[0, 1])
    options = ['model.backbone.pretrained=None']
    # the config's ADE-150 vocabulary and thing classes stay; the weights do not depend on them
    for key in ('backbone', 'pixel_decoder', 'transformer_decoder', 'text_classifier', 'criterion',
                'test_cfg', 'train_vocabulary'):
        options += _flatten(f'model.{key}', tiny[key])
    options += [f'test_dataloader.dataset.data_root={data_root}',
                'test_dataloader.dataset.pipeline.1.scale=(80,64)', 'test_dataloader.num_workers=0',
                'test_dataloader.persistent_workers=False', 'default_hooks.logger.interval=1']
    test_tool = load_tool('test.py')
    metrics = test_tool.main(['configs/fcclip_ade.py', str(tmp_path / 'ckpt.pth'), '--work-dir',
                              str(tmp_path / 'work'), '--cfg-options', *options])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 0.0 <= metrics['PQ'] <= 100.0
    assert np.isnan(metrics['AP']) or 0.0 <= metrics['AP'] <= 100.0
    printed = capfd.readouterr()
    lines = (printed.out + printed.err).strip().splitlines()
    last = next(line for line in reversed(lines) if 'mIoU:' in line)  # the runner's metrics line
    assert 'Metrics computed with checkpoint' in lines[-1]
    assert all(f'{key}:' in last for key in ('mIoU', 'PQ', 'PQ_th', 'PQ_st', 'AP', 'AP50')), last
