"""Few-shot anomaly segmentor and WinCLIP+ head on a tiny random ViT and generated MVTec-layout images."""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.structures import SegDataSample

from ovseg.datasets.anomaly import make_mvtec_like
from ovseg.models.anomaly import nearest_reference
from ovseg.models.decode_heads import WinCLIPFewShotHead, WinCLIPHead
from ovseg.registry import MODELS
from ovseg.testing import CLIP_MEAN_255, CLIP_STD_255, tiny_clip_arch

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 64), keep_ratio=False),
            dict(type='PackSegInputs', meta_keys=('img_path', 'ori_shape', 'img_shape', 'category'))]


def segmentor_cfg(head=None, **kwargs):
    pre = dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255, bgr_to_rgb=True)
    cfg = dict(type='FewShotAnomalySegmentor', data_preprocessor=pre,
               backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit')),
               head=head or dict(type='WinCLIPFewShotHead'), reference_pipeline=PIPELINE)
    cfg.update(kwargs)
    return cfg


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    init_default_scope('mmseg')
    root = tmp_path_factory.mktemp('mvtec_fs')
    make_mvtec_like(str(root), ('brick', 'gravel'), num_good=1, num_defect=1, size=64, num_train=3)
    refs = {c: tuple(str(root / c / 'train' / 'good' / f'{i:03d}.png') for i in range(2))
            for c in ('brick', 'gravel')}
    torch.manual_seed(0)
    model = MODELS.build(segmentor_cfg()).eval()
    return dict(root=root, refs=refs, model=model, inputs=torch.randn(3, 3, 64, 64))


def _samples(*refs):
    out = []
    for paths in refs:
        meta = dict(img_shape=(64, 64), ori_shape=(64, 64), category='brick')
        if paths:
            meta['reference_paths'] = paths
        out.append(SegDataSample(metainfo=meta))
    return out


def test_references_from_metainfo_equal_an_explicit_memory(data):
    model, refs = data['model'], data['refs']['brick']
    memory = model.build_memory(model.load_references(refs))
    assert memory['patch'].shape[0] == 2 * 16 and set(memory['windows']) == {2, 3}
    got = model.predict(data['inputs'][:1], _samples(refs))[0]
    want = model.predict(data['inputs'][:1], _samples(None), memory=memory)[0]
    torch.testing.assert_close(got.anomaly_map.data, want.anomaly_map.data, atol=1e-6, rtol=0)
    zero_shot = model.predict(data['inputs'][:1], _samples(None))[0]
    assert not torch.allclose(got.anomaly_map.data, zero_shot.anomaly_map.data)
    assert list(model._memories) == [refs]  # cached, one set


def test_mixed_batch_equals_single_images(data):
    model, refs = data['model'], data['refs']
    batch = model.predict(data['inputs'], _samples(refs['brick'], refs['gravel'], None))
    for i, paths in enumerate((refs['brick'], refs['gravel'], None)):
        single = model.predict(data['inputs'][i:i + 1], _samples(paths))[0]
        torch.testing.assert_close(batch[i].anomaly_map.data, single.anomaly_map.data, atol=1e-5, rtol=0)
        torch.testing.assert_close(batch[i].pred_score, single.pred_score, atol=1e-6, rtol=0)


def test_winclip_plus_without_memory_is_winclip(data):
    model = data['model']
    zs = WinCLIPHead()(model.backbone, data['inputs'], ['brick'] * 3)
    fs = model.head(model.backbone, data['inputs'], ['brick'] * 3)
    torch.testing.assert_close(fs['anomaly_map'], zs['anomaly_map'])


def test_winclip_plus_query_in_memory_halves_the_zero_shot_scores(data):
    """A query that is its own reference has a zero few-shot map: the combination is the zero-shot map / 2."""
    model = data['model']
    images = data['inputs'][:2]
    memory = model.head.build_memory(model.backbone, images)
    out = model.head(model.backbone, images, ['brick'] * 2, memory)
    assert out['fs_map'].abs().max() < 1e-6
    torch.testing.assert_close(out['patch_map'], out['zs_patch_map'] / 2, atol=1e-6, rtol=0)
    torch.testing.assert_close(out['image_scores'], out['zs_image_scores'] / 2, atol=1e-6, rtol=0)
    assert out['fs_nn_index']['patch'][1].tolist() == list(range(16, 32))  # its own patches


def test_nearest_reference_chunks_and_ties():
    torch.manual_seed(0)
    queries, bank = torch.randn(2, 5, 8), torch.randn(40, 8)
    bank[30] = bank[3]  # an exact tie: the earlier index wins, in any chunking
    queries[0, 0] = bank[3] * 2
    full = nearest_reference(queries, bank)
    for chunk in (1, 7, 10 ** 6):
        dist, index = nearest_reference(queries, bank, chunk_elements=chunk)
        torch.testing.assert_close(dist, full[0])
        assert torch.equal(index, full[1])
    assert full[1][0, 0] == 3
    cos = torch.nn.functional.cosine_similarity(queries[..., None, :], bank, dim=-1)
    torch.testing.assert_close(full[0], (1 - cos).amin(dim=-1), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='non-empty'):
        nearest_reference(queries, bank[:0])


def test_errors(data):
    with pytest.raises(ValueError, match='does not use normal reference images'):
        MODELS.build(segmentor_cfg(head=dict(type='WinCLIPHead')))
    model = data['model']
    memory = model.head.build_memory(model.backbone, torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match='same input size'):
        model.head(model.backbone, data['inputs'][:1], ['brick'], memory)
    no_pipeline = MODELS.build(segmentor_cfg(reference_pipeline=None))
    with pytest.raises(RuntimeError, match='reference_pipeline'):
        no_pipeline.predict(data['inputs'][:1], _samples(data['refs']['brick']))


def test_memory_bytes_bank_linear_search_bounded():
    """The bank is linear in k; the scoring estimate is capped by ``chunk_elements``."""
    head = WinCLIPFewShotHead(chunk_elements=1 << 20)
    per_reference = 4 * (225 * 896 + (196 + 169) * 640)
    sizes = [head.memory_bytes(k, (15, 15), 896, 640) for k in (1, 200, 400)]
    (bank1, _), (bank200, search200), (_, search400) = sizes
    assert bank1 == per_reference and bank200 == 200 * per_reference
    assert search200 == search400 <= 4 * 3 * (1 << 20) + 4 * 225 * 896 + 16 * 225 + (5 << 20)
