import pytest
import torch
import torch.nn.functional as F

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


def _hand_probs(model, x, feats):
    """softmax(100 cos) of dense features against the class embeddings, in float64, upsampled."""
    text = model.class_embeddings().embeddings.double()
    dense = F.normalize(feats.double(), dim=1)
    logits = 100.0 * torch.einsum('bchw,kc->bkhw', dense, text)
    probs = logits.softmax(dim=1).float()
    return F.interpolate(probs, size=x.shape[-2:], mode='bilinear', align_corners=False)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_bf16_backbone_float32_scores(seed):
    """bf16 runs the backbone under autocast and everything after it in float32. Holds for any input:

    - the scores equal softmax(100 cos) of the bf16 model's own features computed in float64, within
      float32 rounding (a head run in bf16 would be off by ~0.4 logit);
    - the backbone did run in bf16: its features differ from float32's, in direction by at most one
      bf16 epsilon (2**-7) per stage that renormalises (patch embedding, 2 blocks, ln_post + proj: 4);
    - probabilities then differ by at most 0.5 x 100 x that direction change (softmax is 1/2-Lipschitz
      in the max norm, and a logit moves by at most 100 x the change of a unit feature against a unit
      text embedding; upsampling averages, which keeps the bound).
    """
    from ovseg.testing.tolerance import assert_close, float32_tolerance
    fp32 = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky'])).eval()
    bf16 = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky'], precision='bf16')).eval()
    bf16.load_state_dict(fp32.state_dict())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        fa, fb = fp32.extract_feat(x).dense.float(), bf16.extract_feat(x).dense
        a, b = fp32.inference(x), bf16.inference(x)
    assert fb.dtype == torch.bfloat16 and b.dtype == torch.float32
    assert_close(b, _hand_probs(bf16, x, fb.float()), depth=2, width=fa.shape[1], scale=100.0, name='bf16 scores')
    direction = (F.normalize(fa, dim=1) - F.normalize(fb.float(), dim=1)).norm(dim=1).max().item()
    assert 0 < direction <= float32_tolerance(1.0, depth=4, eps=2 ** -7)
    assert (a - b).abs().max().item() <= 0.5 * 100.0 * direction + 1e-6


def test_loss_without_trainable_part_is_explicit(model):
    with pytest.raises(RuntimeError, match='nothing to train'):
        model.loss(torch.randn(1, 3, 64, 64), [])


@pytest.mark.parametrize('seed', [0, 1])
def test_background_names_only_scores_background_by_its_best_name(seed):
    """Names without a threshold: the background logit is the maximum over 'background', 'sky' and 'wall'
    (the embeddings of the three names), nothing is forced; scores = softmax(100 cos) of that, for any
    input. Computed here from the model's features and each name's embedding in float64."""
    from ovseg.testing.tolerance import assert_close
    cfg = tiny_maskclip_cfg(['background', 'cat', 'dog'], background=dict(names=['sky', 'wall']))
    model = MODELS.build(cfg).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        probs = model.inference(x)
        dense = F.normalize(model.extract_feat(x).dense.double(), dim=1)
    emb = model.class_embeddings()
    assert emb.synonym_to_class.tolist() == [0, 0, 0, 1, 2]
    names = torch.einsum('bchw,sc->bshw', dense, emb.embeddings.double()) * 100.0
    logits = torch.cat([names[:, :3].amax(dim=1, keepdim=True), names[:, 3:]], dim=1)
    expected = F.interpolate(logits.softmax(dim=1).float(), size=x.shape[-2:], mode='bilinear',
                             align_corners=False)
    assert_close(probs, expected, depth=2, width=dense.shape[1], scale=100.0, name='background by names')


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
