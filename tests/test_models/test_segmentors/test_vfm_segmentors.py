"""ProxyCLIP and CorrCLIP segmentors with tiny random networks: padding, whole / slide, precision, proposals."""
import numpy as np
import pytest
import torch
from mmseg.structures import SegDataSample

from ovseg.registry import MODELS
from ovseg.testing import CLIP_MEAN_255, CLIP_STD_255, tiny_clip_arch

PRE = dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255, bgr_to_rgb=True)
VFM = dict(type='VFMBackbone', model_name='dino_vits8', model_kwargs=dict(embed_dim=32, depth=2, num_heads=2))


class Blocks:
    """Proposals: the image cut into vertical stripes (value 0 for the first one, unsegmented)."""

    needs_image = False

    def __call__(self, image, meta):
        h, w = meta['ori_shape'][:2]
        return torch.arange(w).div(max(w // 4, 1), rounding_mode='floor').expand(h, w).clone()


def _cfg(method, mode, **extra):
    common = dict(data_preprocessor=PRE, text_classifier=dict(type='OVTextClassifier', templates='single',
                                                               cache_dir=None),
                  vocabulary=['background|sky', 'cat', 'dog'], prob_thd=0.1,
                  test_cfg=dict(mode=mode, crop_size=64, stride=32, window_batch=4))
    if method == 'proxyclip':
        cfg = dict(type='ProxyCLIPSegmentor', backbone=dict(
            type='OpenCLIPBackbone', arch=tiny_clip_arch(), pos_mode='bicubic_scale',
            attention=[dict(type='ExternalAffinityAttention', blocks=-1)]), vfm=VFM, pad_multiple=16)
    else:
        arch = tiny_clip_arch()
        arch['vision_cfg'] = dict(arch['vision_cfg'], layers=3)
        cfg = dict(type='CorrCLIPSegmentor', backbone=dict(type='CorrCLIPBackbone', arch=arch, num_spatial=1),
                   vfm=dict(VFM, feature='q+k'), proposals=Blocks(), pad_multiple=16)
    cfg.update(common, **extra)
    return cfg


def _predict(model, shape):
    torch.manual_seed(0)
    x = torch.randn(1, 3, *shape)
    sample = SegDataSample(metainfo=dict(ori_shape=shape, img_shape=shape))
    with torch.no_grad():
        return model.predict(x, [sample])[0]


@pytest.mark.parametrize('method', ['proxyclip', 'corrclip'])
@pytest.mark.parametrize('mode,shape', [('whole', (40, 72)), ('slide', (48, 100)), ('slide', (72, 96))])
def test_vfm_segmentor_shapes(method, mode, shape):
    """Windows smaller than the crop are padded (to 16 here); non-square whole images work."""
    torch.manual_seed(0)
    model = MODELS.build(_cfg(method, mode)).eval()
    out = _predict(model, shape)
    probs, pred = out.seg_logits.data, out.pred_sem_seg.data
    assert probs.shape == (3,) + shape and pred.shape == (1,) + shape
    assert torch.isfinite(probs).all() and pred.max() < 3


def test_corrclip_map_correction_makes_proposals_uniform():
    torch.manual_seed(0)
    model = MODELS.build(_cfg('corrclip', 'slide')).eval()
    shape = (48, 100)
    pred = _predict(model, shape).pred_sem_seg.data[0]
    labels = Blocks()(None, dict(ori_shape=shape))
    for value in torch.unique(labels)[1:]:
        assert len(torch.unique(pred[labels == value])) == 1
    model.map_correction = False
    raw = _predict(model, shape).pred_sem_seg.data[0]
    assert (raw[labels == 0] == pred[labels == 0]).all()


@pytest.mark.parametrize('method', ['proxyclip', 'corrclip'])
def test_vfm_segmentor_bf16_runs_and_mostly_agrees(method):
    torch.manual_seed(0)
    model = MODELS.build(_cfg(method, 'slide')).eval()
    fp32 = _predict(model, (48, 80)).seg_logits.data
    model.precision = 'bf16'
    bf16 = _predict(model, (48, 80)).seg_logits.data
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
    assert np.abs((bf16 - fp32).numpy()).max() < 0.2


def test_corrclip_generated_proposals_from_the_input():
    """A generator source sees the image (the input resized back to the original size without img_path)."""
    torch.manual_seed(0)
    model = MODELS.build(_cfg('corrclip', 'whole', proposals=dict(
        type='GeneratedLabelMaps', generator=dict(type='SuperpixelProposals', n_segments=6)))).eval()
    out = _predict(model, (48, 64))
    assert out.pred_sem_seg.data.shape == (1, 48, 64)


def test_proxyclip_with_sam_encoder_proxy():
    """ProxyCLIP's 'sam' proxy: the window resized to SAM's input size, the neck's 256-channel map."""
    torch.manual_seed(0)
    cfg = _cfg('proxyclip', 'slide', vfm=dict(type='SAMEncoderBackbone', arch='tiny', image_size=64),
               vfm_input_size=(64, 64))
    model = MODELS.build(cfg).eval()
    with torch.no_grad():
        aff = model.affinity(torch.randn(2, 3, 64, 64))
    assert aff.grid == (4, 4) and aff.weights.shape == (2, 16, 16)
    out = _predict(model, (48, 80))
    assert out.seg_logits.data.shape == (3, 48, 80) and torch.isfinite(out.seg_logits.data).all()
