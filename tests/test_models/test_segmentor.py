import pytest
import torch

import ovseg  # noqa: F401
from ovseg.models.utils.sliding_window import slide_inference, window_boxes
from ovseg.registry import MODELS
from ovseg.testing import tiny_maskclip_cfg


@pytest.fixture(scope='module')
def model():
    return MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'grass|lawn'], mode='slide')).eval()


def test_window_grid_covers_image():
    boxes = window_boxes(100, 150, (64, 64), (32, 32))
    cover = torch.zeros(100, 150)
    for y1, y2, x1, x2 in boxes:
        assert (y2 - y1, x2 - x1) == (64, 64)
        cover[y1:y2, x1:x2] += 1
    assert (cover > 0).all()


def test_batched_slide_equals_one_window_at_a_time(model):
    x = torch.randn(2, 3, 96, 130)
    batched = slide_inference(x, model.encode_decode, (64, 64), (32, 32), window_batch=16)
    looped = slide_inference(x, model.encode_decode, (64, 64), (32, 32), window_batch=1)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-5)


def test_predict_returns_seg_data_samples(model):
    from mmseg.structures import SegDataSample
    x = torch.randn(1, 3, 80, 112)
    sample = SegDataSample(metainfo=dict(img_shape=(80, 112), ori_shape=(160, 224)))
    out = model.predict(x, [sample])[0]
    assert out.seg_logits.data.shape == (3, 160, 224)
    assert out.pred_sem_seg.data.shape == (1, 160, 224)
    torch.testing.assert_close(out.seg_logits.data.sum(0), torch.ones(160, 224), atol=1e-4, rtol=0)


def test_whole_mode_pads_to_stride():
    model = MODELS.build(tiny_maskclip_cfg(['a', 'b'], mode='whole')).eval()
    out = model.predict(torch.randn(1, 3, 50, 70))[0]
    assert out.pred_sem_seg.data.shape == (1, 50, 70)


def test_single_class_vocabulary_predicts_that_class():
    model = MODELS.build(tiny_maskclip_cfg(['thing'])).eval()
    out = model.predict(torch.randn(1, 3, 64, 64))[0]
    assert out.pred_sem_seg.data.unique().tolist() == [0]


def test_background_threshold_rule():
    cfg = tiny_maskclip_cfg(['background', 'cat', 'dog'], background=dict(thresh=1.01))
    model = MODELS.build(cfg).eval()
    pred = model.predict(torch.randn(1, 3, 64, 64))[0].pred_sem_seg.data
    assert (pred == 0).all()  # every location is below a threshold above 1


def test_background_names_replace_synonyms():
    cfg = tiny_maskclip_cfg(['cat', 'background'], background=dict(thresh=None, names=['sky', 'wall']))
    model = MODELS.build(cfg)
    assert model.vocabulary.classes[1] == ('background', 'sky', 'wall')
    assert model.background_index == 1


def test_background_rule_needs_background_class():
    with pytest.raises(ValueError, match='background'):
        MODELS.build(tiny_maskclip_cfg(['cat', 'dog'], background=dict(thresh=0.5)))


def test_kspd_options_run():
    cfg = tiny_maskclip_cfg(['cat', 'dog', 'sky'], kspd=dict(pd_thresh=0.5, ks_thresh=1.0))
    model = MODELS.build(cfg).eval()
    out = model.predict(torch.randn(1, 3, 64, 64))[0]
    assert torch.isfinite(out.seg_logits.data).all()


def test_set_vocabulary_changes_classes(model):
    model.set_vocabulary(['sky', 'road'])
    assert model.predict(torch.randn(1, 3, 64, 64))[0].seg_logits.data.shape[0] == 2
    model.set_vocabulary(['cat', 'dog', 'grass|lawn'])


def test_bf16_agrees_with_fp32():
    fp32 = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky'])).eval()
    bf16 = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky'], precision='bf16')).eval()
    bf16.load_state_dict(fp32.state_dict())
    x = torch.randn(1, 3, 64, 64)
    a = fp32.predict(x)[0].seg_logits.data
    b = bf16.predict(x)[0].seg_logits.data
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.2


def test_loss_without_trainable_part_is_explicit(model):
    with pytest.raises(RuntimeError, match='nothing to train'):
        model.loss(torch.randn(1, 3, 64, 64), [])


def test_background_names_only_does_not_force_background():
    cfg = tiny_maskclip_cfg(['background', 'cat', 'dog'], background=dict(names=['sky', 'wall']))
    model = MODELS.build(cfg).eval()
    probs = model.inference(torch.randn(1, 3, 64, 64))
    plain = MODELS.build(tiny_maskclip_cfg(['background', 'cat', 'dog'])).eval()
    assert not torch.allclose(probs[:, 0], torch.ones_like(probs[:, 0]))
    assert probs.shape == plain.inference(torch.randn(1, 3, 64, 64)).shape


@pytest.mark.slow
def test_compiled_backbone_gives_the_same_result():
    """torch.compile of the backbone (inductor, a C++ compiler; ~30 s for the first shape)."""
    plain = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky'])).eval()
    compiled = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky'], compile=True)).eval()
    compiled.load_state_dict(plain.state_dict())
    assert set(compiled.state_dict()) == set(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled.inference(x), plain.inference(x), atol=1e-5, rtol=1e-4)
