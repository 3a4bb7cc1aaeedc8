"""OVSegmentor's class-chunked prediction (test_cfg.class_chunk) equals the whole-map path."""
import contextlib
import dataclasses

import pytest
import torch
from mmseg.structures import SegDataSample

from ovseg.evaluation import OVIoUMetric
from ovseg.registry import MODELS
from ovseg.testing import assert_close, assert_equal_away_from_ties, tiny_maskclip_cfg, top2_margin

VOCAB = [f'class {i}' for i in range(11)]  # 11 classes: not a multiple of the chunks below
# Non-square batch 90 x 130; image 1 flipped, images 2 and 3 padded in the batch, every one resized to
# another original size (up and down).
METAS = [dict(img_shape=(90, 130), ori_shape=(131, 187), flip=True, flip_direction='horizontal'),
         dict(img_shape=(77, 118), ori_shape=(60, 92), flip=True, flip_direction='diagonal'),
         dict(img_shape=(90, 101), ori_shape=(90, 101))]
# Slide windows of 56 are padded to 64 (the tiny ViT's stride is 16) and cropped back: every step runs.
SLIDE = dict(mode='slide', crop_size=56, stride=28, window_batch=3)


@contextlib.contextmanager
def _test_cfg(model, **options):
    saved = dict(model.test_cfg)
    model.test_cfg.update(options)
    try:
        yield model
    finally:
        model.test_cfg.clear()
        model.test_cfg.update(saved)


def _tie(model, first='class 3', second='class 7'):
    """Give ``second`` the text embedding of ``first``: they tie everywhere, and the argmax keeps the first
    (also across chunks). Returns the index of ``second``."""
    emb = model.class_embeddings()
    rows = emb.embeddings.clone()
    index = [model.class_names.index(n) for n in (first, second)]
    rows[emb.synonym_to_class == index[1]] = rows[emb.synonym_to_class == index[0]]
    tied = dataclasses.replace(emb, embeddings=rows)
    model.class_embeddings = lambda: tied
    return index[1]


def _predict(model, inputs, metas=METAS, **options):
    with _test_cfg(model, **options):
        return model.predict(inputs, [SegDataSample(metainfo=dict(m)) for m in metas[:len(inputs)]])


def _assert_same_results(chunked, whole, keep=True, tied=7):
    """Scores: each element is the same chain of bilinear 4-term sums (window upsample, original-size
    resize) and the window average on each class channel alone, so the only float difference is the
    kernel's rounding order, which can change with the number of channels in one call (1 ulp at 4 x 4
    inputs): float32 tolerance of depth 3, width 4, scale 1 (probabilities). Labels: equal away from
    the ties within that tolerance (in practice everywhere)."""
    for out, ref in zip(chunked, whole):
        expected = ref.seg_logits.data
        assert out.pred_sem_seg.data.shape == ref.pred_sem_seg.data.shape == (1, *expected.shape[1:])
        tol = 1e-6
        if keep:
            tol = assert_close(out.seg_logits.data, expected, depth=3, width=4, scale=1.0, name='seg_logits')
        else:
            assert 'seg_logits' not in out
        assert_equal_away_from_ties(out.pred_sem_seg.data[0], ref.pred_sem_seg.data[0], top2_margin(expected, 0),
                                    tol, name='pred_sem_seg', max_near_fraction=1.0)
        if tied is not None:
            assert not (out.pred_sem_seg.data == tied).any() and not (ref.pred_sem_seg.data == tied).any()


@pytest.fixture(scope='module')
def model():
    model = MODELS.build(tiny_maskclip_cfg(VOCAB, test_cfg=dict(SLIDE))).eval()
    _tie(model)
    return model


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_class_chunks_equal_the_whole_map(model, mode):
    inputs = torch.randn(3, 3, 90, 130, generator=torch.Generator().manual_seed(0))
    whole = _predict(model, inputs, mode=mode)
    assert any((r.pred_sem_seg.data == 3).any() for r in whole)  # class 3 (tied with 7) wins somewhere
    for chunk in (1, 4):
        _assert_same_results(_predict(model, inputs, mode=mode, class_chunk=chunk), whole)
        _assert_same_results(_predict(model, inputs, mode=mode, class_chunk=chunk, keep_seg_logits=False),
                             whole, keep=False)


def test_class_chunks_with_background_rule_kspd_and_bf16():
    """The test-time rules act at feature resolution, before the chunks: the background threshold (a
    background class in the middle of the vocabulary), MaskCLIP+ prompt denoising and key smoothing,
    and the backbone under bfloat16 autocast."""
    cfg = tiny_maskclip_cfg(VOCAB[:5] + ['background'] + VOCAB[5:], test_cfg=dict(SLIDE), precision='bf16',
                            background=dict(thresh=0.095), kspd=dict(pd_thresh=0.05, ks_thresh=0.2))
    model = MODELS.build(cfg).eval()  # no tied classes: key smoothing's matmul rounds equal columns apart
    inputs = torch.randn(2, 3, 90, 130, generator=torch.Generator().manual_seed(1))
    whole = _predict(model, inputs)
    labels = torch.cat([r.pred_sem_seg.data.flatten() for r in whole])
    assert (labels == 5).any() and (labels != 5).any()  # the background rule decides somewhere
    _assert_same_results(_predict(model, inputs, class_chunk=3), whole, tied=None)


def test_class_chunks_give_identical_iou(model):
    """Per-class intersection / union / prediction / label counts through OVIoUMetric are identical."""
    inputs = torch.randn(3, 3, 90, 130, generator=torch.Generator().manual_seed(2))
    metas = [dict(m) for m in METAS]
    outputs = {}
    for name, options in (('whole', {}), ('chunked', dict(class_chunk=4, keep_seg_logits=False))):
        samples = _predict(model, inputs, metas, **options)
        metric = OVIoUMetric(ignore_index=255)
        metric.dataset_meta = dict(classes=tuple(VOCAB))
        gen = torch.Generator().manual_seed(3)  # the same ground truth for both
        for sample in samples:
            gt = torch.randint(0, len(VOCAB) + 1, sample.pred_sem_seg.data.shape, generator=gen)
            gt[gt == len(VOCAB)] = 255
            sample.gt_sem_seg = type(sample.pred_sem_seg)(data=gt)
        metric.process({}, [s.to_dict() for s in samples])
        outputs[name] = (metric.results, metric.evaluate(len(samples)))
    for counts, ref in zip(outputs['chunked'][0], outputs['whole'][0]):
        assert (counts == ref).all()
    assert outputs['chunked'][1] == outputs['whole'][1]


def test_whole_maps_when_chunks_cannot_apply(model, monkeypatch):
    """Postprocessors (PAMR) and a vocabulary no larger than the chunk use the whole maps; keep_seg_logits
    still applies there."""
    from ovseg.models.segmentors import ov_segmentor

    def fail(*args, **kwargs):
        raise AssertionError('chunked path taken')

    monkeypatch.setattr(ov_segmentor, 'predict_in_class_chunks', fail)
    inputs = torch.randn(1, 3, 64, 80)
    out = _predict(model, inputs, class_chunk=len(VOCAB), keep_seg_logits=False)[0]
    assert 'seg_logits' not in out and out.pred_sem_seg.data.shape == (1, 131, 187)
    pamr = MODELS.build(tiny_maskclip_cfg(VOCAB, postprocessors=[dict(type='PAMR', num_iter=2)],
                                          test_cfg=dict(mode='whole', class_chunk=2))).eval()
    assert pamr.predict(inputs)[0].seg_logits.data.shape == (len(VOCAB), 64, 80)


@pytest.mark.parametrize('chunk', [0, -1, 2.5, True, '64'])
def test_class_chunk_must_be_a_positive_int(chunk):
    with pytest.raises(ValueError, match='class_chunk'):
        MODELS.build(tiny_maskclip_cfg(VOCAB, test_cfg=dict(mode='whole', class_chunk=chunk)))
