"""bf16 inference of FC-CLIP and the anomaly segmentors (WinCLIP, AnoVL, MuSc, AnomalyCLIP) vs fp32.

Tiny random models (those of test_fcclip.py, test_anomaly_heads.py and test_anomalyclip_training.py),
the same weights in both precisions, CPU autocast. Checked: the image towers really run in bfloat16,
every returned tensor is float32 (MuSc's float64 ``ac_score`` stays float64), the text embeddings are
float32 (a bf16 call first does not change a later fp32 result), ``loss`` ignores the precision, bad
precisions raise, and the outputs agree with fp32 within these loose bounds (max |bf16 - fp32|;
measured on the CPU over torch seeds 0-4, bounds about 2-10x the worst seed):

============  ==================================  ==============================  ===========
model         output (its fp32 range)              measured max |diff|             bound
============  ==================================  ==============================  ===========
FC-CLIP       semantic scores ``seg_logits``       0.0023-0.063 (0.7-5.6)          0.15
FC-CLIP       ``probs`` (ensemble, void)           0.0010-0.028                    0.1
WinCLIP       anomaly map (spread 0.04-0.08)       0.0006-0.0013                   0.005
WinCLIP       image score                          0.0004-0.0009                   0.005
AnoVL         anomaly map (spread 0.008-0.03)      2e-5-9e-5                       5e-4
AnoVL         image score (22 views)               1e-5-1.1e-4                     5e-4
AnoVL + TTA   anomaly map                          5e-5-2.2e-4                     1e-3
MuSc          anomaly map (values ~1, spread 0.25) 0.0014-0.0020                   0.01
MuSc          RsCIN image score (min-max scaled)   0.003-0.064                     0.2
AnomalyCLIP   anomaly map (range 0-2, 2 layers)    0.0045-0.016                    0.05
AnomalyCLIP   image score                          0.0002-0.0049                   0.02
============  ==================================  ==============================  ===========

Argmax agreement is not a useful bound for random weights (FC-CLIP seed 1: 82 % with a 0.006 score
difference, classes nearly tied everywhere); the score bound implies that every pixel whose fp32 top-2
margin exceeds twice the bound keeps its class, which is checked.
"""
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

import ovseg.models.anomaly.anomalyclip  # noqa: F401  registers AnomalyCLIPSegmentor
from ovseg.registry import MODELS
from ovseg.testing import tiny_clip_arch
from ovseg.testing.fcclip import tiny_fcclip_cfg

HALF = (torch.bfloat16, torch.float16)
ANOMALYCLIP_HEAD = dict(type='AnomalyCLIPHead', n_ctx=4, text_depth=2, text_n_ctx=2, features=(1, 2),
                        vv_blocks=1)
# name -> (head config, images, {output: bound})
ANOMALY = {
    'winclip': (dict(type='WinCLIPHead'), 2, dict(anomaly_map=0.005, image_scores=0.005)),
    'anovl': (dict(type='AnoVLHead', view_batch=8), 2, dict(anomaly_map=5e-4, image_scores=5e-4)),
    'anovl_tta': (dict(type='AnoVLHead', view_batch=8, adapter=dict(type='AnoVLTestTimeAdapter')), 2,
                  dict(anomaly_map=1e-3, image_scores=5e-4)),
    'musc': (dict(type='MuScHead', layers=(0, 1)), 6, dict(anomaly_map=0.01, image_scores=0.2)),
    'anomalyclip': (ANOMALYCLIP_HEAD, 2, dict(anomaly_map=0.05, image_scores=0.02)),
}


def _no_half(obj):
    """Whether no bfloat16 / float16 tensor is left anywhere in ``obj``."""
    if isinstance(obj, torch.Tensor):
        return obj.dtype not in HALF
    if isinstance(obj, dict):
        return all(_no_half(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(_no_half(v) for v in obj)
    if hasattr(obj, '__dataclass_fields__'):
        return all(_no_half(getattr(obj, k)) for k in obj.__dataclass_fields__)
    return True


def _record_dtype(module):
    seen = []
    return seen, module.register_forward_hook(lambda m, a, out: seen.append(out.dtype))


def _anomaly_model(name, precision='fp32'):
    arch = tiny_clip_arch('vit')
    arch['text_cfg']['layers'] = 2  # AnomalyCLIP's one deep prompt set needs two text blocks
    seg = 'AnomalyCLIPSegmentor' if name == 'anomalyclip' else 'ZeroShotAnomalySegmentor'
    return MODELS.build(dict(type=seg, backbone=dict(type='OpenCLIPBackbone', arch=arch), head=ANOMALY[name][0],
                             precision=precision)).eval()


def _fcclip(precision='fp32'):
    return MODELS.build(tiny_fcclip_cfg(thing_classes=['cat', 'dog'], precision=precision)).eval()


# ------------------------------------------------------------------------------------------- FC-CLIP
def test_fcclip_bf16_agrees_with_fp32():
    torch.manual_seed(0)
    model = _fcclip()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref, ref_res = model.inference(x), model.predict(x)
        model.precision = 'bf16'
        stem, h1 = _record_dtype(model.backbone.clip.visual.trunk.stages[0].blocks[0].mlp.fc1)
        queries, h2 = _record_dtype(model.transformer_decoder.mask_embed)
        out, res = model.inference(x), model.predict(x)
        h1.remove(), h2.remove()
    assert stem[0] == torch.bfloat16 and queries[0] == torch.bfloat16  # autocast reached both
    assert _no_half(out)
    for key in ('pred_logits', 'pred_masks', 'probs', 'log_probs'):
        assert out[key].dtype == torch.float32, key
    assert (out['probs'] - ref['probs']).abs().max() < 0.1
    for a, b in zip(ref_res, res):
        assert b.seg_logits.data.dtype == torch.float32 and b.pred_instances.scores.dtype == torch.float32
        diff = (a.seg_logits.data - b.seg_logits.data).abs().max()
        assert 0 < diff < 0.15  # bf16 changed something, not much
        top2 = a.seg_logits.data.topk(2, dim=0).values
        decided = (top2[0] - top2[1]) > 0.3
        assert (a.pred_sem_seg.data[0] == b.pred_sem_seg.data[0])[decided].all()
        assert b.pred_panoptic_seg.data.dtype == torch.int32


def test_fcclip_text_float32_and_loss_ignore_precision():
    torch.manual_seed(0)
    model = _fcclip('bf16')
    fresh = _fcclip()
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.inference(x)  # bf16 first: the text embeddings it caches must be float32
        model.precision = 'fp32'
        torch.testing.assert_close(model.inference(x)['log_probs'], fresh.inference(x)['log_probs'],
                                   rtol=0, atol=0)
    sem = torch.zeros(1, 64, 64, dtype=torch.long)
    sem[:, 20:50, 10:40] = 1
    samples = [SegDataSample(gt_sem_seg=PixelData(data=sem))]
    model.precision = 'bf16'
    losses = []
    for m in (model, fresh):
        gen = torch.Generator().manual_seed(0)
        losses.append(m.train().loss(x, samples, rand=lambda shape, device: torch.rand(shape, generator=gen)))
    assert losses[0].keys() == losses[1].keys()
    for key in losses[0]:
        torch.testing.assert_close(losses[0][key], losses[1][key], rtol=0, atol=0)
        assert losses[0][key].dtype == torch.float32


# ------------------------------------------------------------------------------------------- anomaly
@pytest.mark.parametrize('name', sorted(ANOMALY))
def test_anomaly_bf16_agrees_with_fp32(name):
    torch.manual_seed(0)
    model = _anomaly_model(name)
    _, num, bounds = ANOMALY[name]
    x = torch.randn(num, 3, 64, 64)
    samples = [SegDataSample(metainfo=dict(category='metal_nut')) for _ in range(num)]
    with torch.no_grad():
        ref = model.run_head(x, samples)
        model.precision = 'bf16'
        tower, hook = _record_dtype(model.backbone.clip.visual.transformer.resblocks[0].mlp)
        out = model.run_head(x, samples)
        results = model.predict(x, samples)
        hook.remove()
    assert tower and all(d == torch.bfloat16 for d in tower)  # the image tower ran in bf16
    assert _no_half(out)
    assert out['anomaly_map'].dtype == torch.float32 and out['image_scores'].dtype == torch.float32
    assert results[0].anomaly_map.data.dtype == torch.float32 and results[0].pred_score.dtype == torch.float32
    for key, bound in bounds.items():
        diff = (out[key] - ref[key]).abs().max()
        assert diff < bound, (key, float(diff))
    assert (out['anomaly_map'] != ref['anomaly_map']).any()  # bf16 did change the maps


@pytest.mark.parametrize('name', ['winclip', 'anomalyclip'])  # AnoVL: WinCLIP's prompt module
def test_anomaly_text_embeddings_stay_float32(name):
    """A bf16 call first (which fills the prompt caches) leaves a later fp32 result unchanged."""
    torch.manual_seed(0)
    model = _anomaly_model(name, 'bf16')
    fresh = _anomaly_model(name)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model.run_head(x)
        model.precision = 'fp32'
        torch.testing.assert_close(model.run_head(x)['anomaly_map'], fresh.run_head(x)['anomaly_map'],
                                   rtol=0, atol=0)


def test_anomalyclip_loss_ignores_precision():
    torch.manual_seed(0)
    model = _anomaly_model('anomalyclip', 'bf16').train()
    fresh = _anomaly_model('anomalyclip').train()
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(1, 64, 64, dtype=torch.long)
    mask[:, 20:30, 20:30] = 1
    samples = [SegDataSample(metainfo=dict(anomaly_label=i), gt_sem_seg=PixelData(data=mask * i))
               for i in (0, 1)]
    a, b = model.loss(x, samples), fresh.loss(x, samples)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# -------------------------------------------------------------------------------------- the option
@pytest.mark.parametrize('build', [_fcclip, lambda p: _anomaly_model('winclip', p),
                                   lambda p: _anomaly_model('anomalyclip', p)],
                         ids=['fcclip', 'zero_shot_anomaly', 'anomalyclip'])
def test_invalid_precision_raises(build):
    with pytest.raises(ValueError, match=r"precision must be one of \['bf16', 'fp16', 'fp32'\], got 'half'"):
        build('half')
    model = build('fp16')
    assert model.precision == 'fp16'
    with pytest.raises(ValueError, match='precision must be one of'):
        model.precision = 'float32'
    assert model.precision == 'fp16'
