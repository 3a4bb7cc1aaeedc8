"""Trident's parts with tiny random networks: the splicer, SAM's last-block attention pass, the
SAM-correlation aggregator and the segmentor (single encodings, batching, Cityscapes halves, patch 14,
bf16). Parity with the original code: tests/test_parity/test_parity_trident.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmseg.structures import SegDataSample

from ovseg.models.backbones.sam_encoder_backbone import encode_with_last_attention
from ovseg.models.proposals.sam import build_sam_model
from ovseg.models.refiners.sam_correlation import SAMCorrelationAggregator
from ovseg.models.utils.window_splice import SubWindowSplicer
from ovseg.registry import MODELS
from ovseg.testing import tiny_clip_arch, tolerance_for
from ovseg.testing.tiny import CLIP_MEAN_255, CLIP_STD_255


# ------------------------------------------------------------------------------------------ splicer
@pytest.mark.parametrize('size,expected', [((448, 672), (448, 672)), ((300, 451), (336, 464)),
                                           ((320, 320), (336, 336)), ((500, 375), (512, 384))])
def test_splicer_input_size(size, expected):
    """Trident's preprocess_image rule (the fixture's 300 x 451 -> 336 x 464), at least one window."""
    assert SubWindowSplicer(336, 224, 16).input_size(*size) == expected


def test_splicer_windows_and_exact_splice():
    """Windows on token boundaries, row by row; a backbone whose output cell depends on its own pixels only
    splices to the whole image's output exactly (every window agrees on every cell it covers)."""
    splicer = SubWindowSplicer(crop=64, stride=32, patch=16)
    image = torch.rand(1, 3, 96, 160)
    crops, boxes = splicer.windows(image)
    assert boxes.tolist() == [[0, 0, 4, 4], [0, 2, 4, 6], [0, 4, 4, 8], [0, 6, 4, 10],
                              [2, 0, 6, 4], [2, 2, 6, 6], [2, 4, 6, 8], [2, 6, 6, 10]]
    calls = []

    def pool(x):
        calls.append(len(x))
        return F.avg_pool2d(x, 16)

    spliced = splicer(image, pool, window_batch=3)
    assert calls == [3, 3, 2]
    torch.testing.assert_close(spliced, F.avg_pool2d(image, 16), rtol=0, atol=1e-6)
    maps = torch.ones(len(boxes), 1, 2, 2)  # another grid than the windows' 4 x 4 tokens: resized first
    out, count = splicer.splice(maps, boxes, (6, 10))
    assert torch.equal(out, torch.ones(1, 1, 6, 10)) and count.max() == 4
    with pytest.raises(ValueError, match='token grid'):
        splicer.windows(torch.rand(1, 3, 90, 160))
    with pytest.raises(ValueError, match='multiples of the patch'):
        SubWindowSplicer(crop=60, stride=32, patch=16)


# --------------------------------------------------------------------------------- SAM correlations
@pytest.fixture(scope='module')
def tiny_sam():
    torch.manual_seed(0)
    sam = build_sam_model('tiny', image_size=256, prompt_dim=32, num_heads=4)
    for p in sam.parameters():
        p.data.normal_(0, 0.1)
    return sam.eval()


def _reference_weights(attn, v, valid, grid, cos_fac=1.2, cap=0.9, keep_negative=True):
    """Trident's get_sam_sim written out on full tensors (heads, L, L) / (heads, L, d)."""
    (sh, sw), g = valid, grid
    heads = attn.shape[0]
    a = attn.view(heads, g, g, g, g)[:, :sh, :sw, :sh, :sw].reshape(heads, sh * sw, sh * sw)
    vv = F.normalize(v.view(heads, g, g, -1)[:, :sh, :sw].reshape(heads, sh * sw, -1), dim=-1)
    cos = vv @ vv.transpose(1, 2)
    thresh = (cos_fac * cos.mean(dim=(0, 2))).clamp(max=cap)
    if not keep_negative:
        thresh = thresh.clamp(min=0)
    w = (a * (cos > thresh[None, :, None])).mean(0)
    # a row is "near a tie" where one of its cosines lies within float32 rounding of its threshold: its
    # kept set, hence its normalisation, may differ with another order of the same sums
    tol = tolerance_for(cos.numpy(), depth=2, width=vv.shape[-1], scale=1.0)
    near = ((cos - thresh[None, :, None]).abs() <= tol).any(dim=2).any(dim=0)
    return w / w.sum(-1, keepdim=True), near


def _captured_attention(sam, x):
    seen = {}

    def consume(attn, v, heads):
        seen.setdefault('attn', []).append(attn.clone())
        seen['v'] = v

    with torch.no_grad():
        emb = encode_with_last_attention(sam.image_encoder, x, consume, head_chunk=3)
    return emb, torch.cat(seen['attn'], dim=1)[0], seen['v'][0]


def test_last_attention_pass_is_the_encoder(tiny_sam):
    """One pass gives the encoder's own output and its last block's softmax rows (relative positions in)."""
    x = torch.randn(1, 3, 256, 256)
    emb, attn, v = _captured_attention(tiny_sam, x)
    with torch.no_grad():
        torch.testing.assert_close(emb, tiny_sam.image_encoder(x), rtol=0, atol=0)
    assert attn.shape == (4, 256, 256) and v.shape == (4, 256, 16)
    torch.testing.assert_close(attn.sum(-1), torch.ones(4, 256))


@pytest.mark.parametrize('valid,keep_negative,cos_fac', [((16, 16), True, 1.2), ((10, 16), True, 1.2),
                                                         ((16, 9), False, 3.0), ((7, 5), True, 0.0)])
def test_aggregator_weights_and_aggregation(tiny_sam, valid, keep_negative, cos_fac):
    """Weights accumulated head by head equal Trident's formula on the full maps; aggregation is W @ the
    features resized to the valid grid; rows sum to 1."""
    x = torch.randn(1, 3, 256, 256)
    _, attn, v = _captured_attention(tiny_sam, x)
    agg = SAMCorrelationAggregator(cos_fac=cos_fac, keep_negative=keep_negative, head_chunk=3)
    emb, affinity = agg.correlation(tiny_sam.image_encoder, x, valid)
    expected, near = _reference_weights(attn, v, valid, 16, cos_fac, 0.9, keep_negative)
    assert int(near.sum()) <= 0.1 * len(near), f'{int(near.sum())} of {len(near)} rows near a tie'
    torch.testing.assert_close(affinity.weights[0][~near], expected[~near], rtol=1e-5, atol=1e-7)
    assert affinity.grid == valid
    feats = torch.randn(2, 5, 11, 13)
    out = agg(feats, affinity)
    resized = F.interpolate(feats, size=valid, mode='bilinear', align_corners=False).flatten(2)
    torch.testing.assert_close(out.flatten(2)[:, :, ~near], (resized @ expected.T)[:, :, ~near], rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match='inside the encoder grid'):
        agg.correlation(tiny_sam.image_encoder, x, (17, 4))


# --------------------------------------------------------------------------------------- segmentor
def tiny_trident(patch=16, **overrides):
    arch = tiny_clip_arch()
    arch['vision_cfg'] = dict(arch['vision_cfg'], patch_size=patch)
    cfg = dict(
        type='TridentSegmentor',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255, bgr_to_rgb=True),
        backbone=dict(type='OpenCLIPBackbone', arch=arch, attention=[dict(type='ExternalAffinityAttention')],
                      pos_mode='bicubic_scale'),
        vfm=dict(type='VFMBackbone', model_name='dino_vitb16', model_kwargs=dict(embed_dim=32, depth=2, num_heads=2)),
        sam_refiner=dict(type='SAMRefiner', sam=dict(type='SAMPredictor', arch='tiny', image_size=256, prompt_dim=32),
                         coarse_thresh=0.0, minimal_area=4, iou_thresh=-10.0, image_multiple=patch),
        text_classifier=dict(type='OVTextClassifier', templates='single', cache_dir=None),
        vocabulary=['background', 'cat', 'dog'], prob_thd=0.0,
        test_cfg=dict(crop_size=4 * patch * 2, stride=4 * patch, window_batch=2))
    cfg.update(overrides)
    torch.manual_seed(0)
    return MODELS.build(cfg).eval()


def _sample(image):
    return SegDataSample(metainfo=dict(ori_shape=image.shape[:2], img_shape=image.shape[:2], ori_img=image))


def _inputs(model, image):
    x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
    return model.data_preprocessor(dict(inputs=[x], data_samples=[_sample(image)]), False)['inputs']


def _count_calls(module):
    calls = []
    handle = module.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    return calls, handle


@pytest.mark.parametrize('sam_splits', [1, 2])
def test_trident_segmentor_encodes_each_sam_input_once(sam_splits):
    """The SAM image feeds the aggregation and the refinement with one encoding (two halves plus the whole
    image on the Cityscapes path); windows go through DINO and CLIP in batches of ``window_batch``."""
    model = tiny_trident(sam_splits=sam_splits)
    image = np.random.default_rng(0).integers(0, 255, (160, 224, 3), dtype=np.uint8)
    inputs = _inputs(model, image)
    encoder = model.sam.model.image_encoder
    sam_calls, h1 = _count_calls(encoder.patch_embed)
    dino_calls, h2 = _count_calls(model.vfm.trunk.patch_embed.proj)
    clip_calls, h3 = _count_calls(model.backbone.clip.visual.conv1)
    try:
        trace = {}
        with torch.no_grad():
            scores, pred = model.segment_image(inputs, image, trace)
        results = model.predict(inputs, [_sample(image)])
    finally:
        for h in (h1, h2, h3):
            h.remove()
    per_image = 1 if sam_splits == 1 else 3
    assert len(sam_calls) == 2 * per_image  # segment_image, then predict
    assert dino_calls[:3] == [2, 2, 2] and clip_calls[:3] == [2, 2, 2]  # 6 windows of 128 in batches of 2
    assert trace['window_boxes'].shape == (6, 4) and trace['refine'] is not None
    assert (trace['sam_image'] is None) == (sam_splits == 2)
    if sam_splits == 2:
        # halves of 160 x 112 at SAM's 256: 256 x 179 pixels, 16 x 11 valid cells each
        assert [a.grid for a in trace['sam_affinities']] == [(16, 11), (16, 11)]
        assert trace['cos_grid'].shape[-2:] == (16, 22)
    assert scores.shape == (3, 160, 224) and pred.shape == (1, 160, 224)
    assert torch.equal(scores.argmax(0, keepdim=True), pred) or trace['refine'].changed
    out = results[0]
    assert out.pred_sem_seg.data.shape == (1, 160, 224) and out.seg_logits.data.shape == (3, 160, 224)
    torch.testing.assert_close(out.seg_logits.data, scores)


def test_trident_segmentor_without_refinement_patch14_and_bf16():
    """Patch-14 CLIP with DINO's patch-16 attention (values resized to DINO's grid, outputs back to the
    windows' tokens); no refinement returns the coarse prediction; bf16 runs the towers in bf16 and agrees
    with fp32 up to its rounding."""
    model = tiny_trident(patch=14, sam_refinement=False)
    image = np.random.default_rng(1).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    inputs = _inputs(model, image)
    trace = {}
    with torch.no_grad():
        scores, pred = model.segment_image(inputs, image, trace)
    assert trace['clip_input'].shape[-2:] == (168, 210) and trace['spliced'].shape[-2:] == (12, 15)
    assert trace['window_maps'].shape[-2:] == (7, 7)  # DINO's grid of a 112-pixel window
    assert trace['refine'] is None and torch.equal(pred, trace['coarse_pred'])
    assert trace['sam_rgb'].shape[:2] == (154, 210)  # rounded up to multiples of 14
    model.precision = 'bf16'
    with torch.no_grad():
        scores16, _ = model.segment_image(inputs, image)
    assert scores16.dtype == torch.float32
    assert (scores16 - scores).abs().max() < 0.05


def test_trident_segmentor_errors():
    with pytest.raises(ValueError, match='sam_splits'):
        tiny_trident(sam_splits=3)
    model = tiny_trident()
    with pytest.raises(NotImplementedError, match='predict'):
        model.inference(torch.zeros(1, 3, 64, 64))
