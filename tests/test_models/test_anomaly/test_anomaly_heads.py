"""WinCLIP / MuSc building blocks and the anomaly segmentor on tiny random models and hand-made features."""
import numpy as np
import pytest
import torch
from mmseg.structures import SegDataSample

from ovseg.datasets.anomaly.synthetic import _texture, synthetic_sample
from ovseg.evaluation.anomaly import auroc
from ovseg.models.anomaly import anomaly_probability, harmonic_aggregation, musc_scores, rscin, window_masks
from ovseg.models.decode_heads import WinCLIPHead
from ovseg.registry import MODELS
from ovseg.testing import CLIP_MEAN_255, CLIP_STD_255, tiny_clip_arch


@pytest.fixture(scope='module')
def backbone():
    return MODELS.build(dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit'))).eval()


def test_window_masks_order():
    masks = window_masks((4, 5), 2)
    assert masks.shape == (4, 3 * 4)
    assert masks[:, 0].tolist() == [0, 1, 5, 6]  # first window: top-left 2x2, row-major
    assert masks[:, 1].tolist() == [1, 2, 6, 7]  # windows move along the row first
    with pytest.raises(ValueError, match='does not fit'):
        window_masks((2, 2), 3)


def test_harmonic_aggregation_matches_definition():
    grid, k = (4, 5), 3
    masks = window_masks(grid, k)
    scores = torch.rand(2, masks.shape[1], dtype=torch.float64) + 0.1
    got = harmonic_aggregation(scores, masks, grid)
    for p in range(grid[0] * grid[1]):
        covering = (masks == p).any(dim=0)
        expected = covering.sum() / (1 / scores[:, covering]).sum(dim=1)
        torch.testing.assert_close(got.reshape(2, -1)[:, p], expected)


def test_anomaly_probability_is_softmax_of_cosines():
    text = torch.randn(2, 8)
    assert anomaly_probability(text[:1].repeat(3, 1), text.flip(0) * 0 + text[0]).allclose(torch.tensor(0.5))
    emb = torch.randn(3, 5, 8)
    prob = anomaly_probability(emb, text, temperature=0.07)
    cos = torch.nn.functional.cosine_similarity(emb[..., None, :], text, dim=-1)
    torch.testing.assert_close(prob, (cos / 0.07).softmax(-1)[..., 1])


def test_winclip_head_shapes_and_class_names(backbone):
    head = WinCLIPHead(scales=(2, 3))
    images = torch.randn(2, 3, 64, 64)
    out = head(backbone, images, ['bottle', 'metal nut'])
    assert out['image_scores'].shape == (2,) and out['anomaly_map'].shape == (2, 64, 64)
    assert out['scale_maps'].shape == (2, 3, 4, 4)
    assert ((out['anomaly_map'] > 0) & (out['anomaly_map'] < 1)).all()
    single = head(backbone, images[1:], ['metal nut'])
    torch.testing.assert_close(single['anomaly_map'][0], out['anomaly_map'][1], atol=1e-6, rtol=0)


def test_winclip_needs_a_vit():
    resnet = MODELS.build(dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('resnet')))
    with pytest.raises(NotImplementedError, match='ViT'):
        WinCLIPHead()(resnet, torch.randn(1, 3, 64, 64), ['object'])


def _handmade_tokens(images, patch=8, bins=8):
    """A hand-made 'feature extractor': the grey-level histogram of every 8x8 patch (+ a dummy CLS)."""
    grey = torch.from_numpy(np.stack(images)[..., 0]).float() / 256
    n, grid = grey.shape[0], grey.shape[1] // patch
    patches = grey.reshape(n, grid, patch, grid, patch).permute(0, 1, 3, 2, 4).reshape(n, grid * grid, -1)
    hist = torch.nn.functional.one_hot((patches * bins).long(), bins).float().mean(dim=2)
    return torch.cat([hist.mean(1, keepdim=True), hist], dim=1)


@pytest.mark.parametrize('texture', ['brick', 'grass', 'gravel'])
def test_musc_planted_defects_score_above_background(texture):
    rng = np.random.default_rng(0)
    source = _texture(texture)
    samples = [synthetic_sample(source, 96, rng, defect=i % 3 == 0) for i in range(9)]
    out = musc_scores([_handmade_tokens([s[0] for s in samples])], None, 96, r_list=(1, 3))
    masks = np.stack([s[1] for s in samples])
    assert out['anomaly_maps'].shape == (9, 96, 96)
    assert auroc(masks, out['anomaly_maps'].numpy()) > 0.95
    defect_images = torch.from_numpy(masks.reshape(9, -1).any(1))
    assert out['ac_score'][defect_images].min() > out['ac_score'][~defect_images].max()


def test_musc_errors_instead_of_nan():
    tokens = torch.randn(4, 17, 8)
    with pytest.raises(ValueError, match='at least 5 images'):
        musc_scores([tokens], None, 16)
    with pytest.raises(ValueError, match='needs at least 9 images'):
        rscin(torch.rand(5, dtype=torch.float64), torch.randn(5, 4), (1, 8, 9))
    flat = rscin(torch.full((5,), 0.3, dtype=torch.float64), torch.nn.functional.normalize(torch.randn(5, 4)))
    assert torch.isfinite(flat).all()


def _segmentor(head):
    return MODELS.build(dict(
        type='ZeroShotAnomalySegmentor',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255,
                               bgr_to_rgb=True),
        backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit')), head=head,
        class_names={'pcb1': 'printed circuit board'}, test_cfg=dict(threshold=0.5)))


def test_segmentor_packs_maps_and_scores():
    model = _segmentor(dict(type='WinCLIPHead'))
    samples = [SegDataSample(metainfo=dict(category=c, img_shape=(64, 64), ori_shape=(80, 96)))
               for c in ('pcb1', 'metal_nut')]
    assert model.class_names(samples, 2) == ['printed circuit board', 'metal nut']
    results = model.predict(torch.randn(2, 3, 64, 64), samples)
    assert results[0].anomaly_map.data.shape == (1, 80, 96)
    assert results[0].pred_score.shape == () and results[0].pred_sem_seg.data.shape == (1, 80, 96)
    with pytest.raises(RuntimeError, match='training-free'):
        model.loss(torch.randn(1, 3, 64, 64), samples[:1])


def test_segmentor_rejects_mixed_category_batch_for_musc():
    model = _segmentor(dict(type='MuScHead', layers=(0, 1)))
    samples = [SegDataSample(metainfo=dict(category='a' if i < 3 else 'b')) for i in range(6)]
    with pytest.raises(ValueError, match='CategoryBatchSampler'):
        model.predict(torch.randn(6, 3, 64, 64), samples)
    results = model.predict(torch.randn(6, 3, 64, 64), [SegDataSample(metainfo=dict(category='a'))
                                                         for _ in range(6)])
    assert len(results) == 6 and results[0].anomaly_map.data.shape == (1, 64, 64)
