import pytest
import torch

import ovseg  # noqa: F401
from ovseg.models.backbones import OpenCLIPBackbone
from ovseg.testing import tiny_clip_arch


@pytest.fixture(scope='module', params=['vit', 'resnet', 'convnext'])
def backbone(request):
    return OpenCLIPBackbone(arch=tiny_clip_arch(request.param)).eval()


@pytest.mark.parametrize('size', [(64, 64), (96, 160), (32, 224)])
def test_dense_features_any_size(backbone, size):
    x = torch.randn(2, 3, *size)
    feats = backbone(x, with_global=True)
    s = backbone.stride
    assert feats.dense.shape == (2, backbone.embed_dim, size[0] // s, size[1] // s)
    assert feats.global_feat.shape == (2, backbone.embed_dim)
    assert torch.isfinite(feats.dense).all()


def test_backbone_is_frozen(backbone):
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert not backbone.clip.training


def test_vit_global_matches_open_clip():
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('vit')).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = bb(x, with_global=True).global_feat
        ref = bb.clip.encode_image(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_resnet_global_matches_open_clip():
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('resnet')).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb(x, with_global=True).global_feat, bb.clip.encode_image(x),
                                   atol=1e-5, rtol=1e-5)


def test_vit_value_path_differs_from_attention_path():
    """The MaskCLIP path must not be the ordinary last block (q-k attention skipped)."""
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('vit')).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = bb.clip.visual.forward_intermediates(x, indices=[1], intermediates_only=True)
        dense = bb(x).dense
    normal = bb.clip.visual.ln_post(out['image_intermediates'][0].flatten(2).transpose(1, 2)) \
        @ bb.clip.visual.proj
    assert not torch.allclose(normal.transpose(1, 2).reshape_as(dense), dense, atol=1e-3)


def test_vit_token_hooks():
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('vit'), token_layers=('resblocks.-2.ln_2', 'resblocks.0',
                                                                     'last_keys')).eval()
    feats = bb(torch.randn(1, 3, 64, 96))
    assert set(feats.tokens) == {'resblocks.-2.ln_2', 'resblocks.0', 'last_keys'}
    for value in feats.tokens.values():
        assert value.shape == (1, 32, 4, 6)


def test_convnext_stages_and_projection():
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('convnext')).eval()
    feats = bb(torch.randn(1, 3, 64, 64))
    assert [feats.tokens[k].shape[-1] for k in ('res2', 'res3', 'res4', 'res5')] == [16, 8, 4, 2]
    pooled = feats.tokens['clip_vis_dense'].mean(dim=(2, 3))
    assert bb.project_pooled(pooled).shape == (1, bb.embed_dim)


def test_bad_token_layer_names():
    with pytest.raises(ValueError, match='layer1'):
        OpenCLIPBackbone(arch=tiny_clip_arch('resnet'))(torch.randn(1, 3, 64, 64), token_layers=('x',))


def test_unknown_architecture_and_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match='Unknown open_clip architecture'):
        OpenCLIPBackbone(model_name='ViT-Nope')
    with pytest.raises(FileNotFoundError, match='not found'):
        OpenCLIPBackbone(arch=tiny_clip_arch('vit'), checkpoint=str(tmp_path / 'none.pt'))


def test_checkpoint_with_wrong_keys_names_them(tmp_path):
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('vit'))
    state = bb.clip.state_dict()
    state['visual.bogus'] = torch.zeros(1)
    del state['visual.proj']
    path = tmp_path / 'clip.pt'
    torch.save(state, path)
    with pytest.raises(KeyError, match=r'visual\.proj.*visual\.bogus'):
        OpenCLIPBackbone(arch=tiny_clip_arch('vit'), checkpoint=str(path))


def test_checkpoint_roundtrip(tmp_path):
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('vit'))
    path = tmp_path / 'clip.pt'
    torch.save({'state_dict': bb.clip.state_dict()}, path)
    bb2 = OpenCLIPBackbone(arch=tiny_clip_arch('vit'), checkpoint=str(path))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(bb(x).dense, bb2(x).dense)


def test_pretrained_offline_fails_fast(monkeypatch):
    import time

    from ovseg.models.backbones import WeightsUnavailableError
    from ovseg.models.backbones import open_clip_loader
    monkeypatch.setattr(open_clip_loader, '_cached_pretrained_file', lambda cfg, cache_dir: None)
    monkeypatch.setattr(open_clip_loader, '_hub_reachable', lambda url, timeout=3.0: False)
    start = time.time()
    with pytest.raises(WeightsUnavailableError, match='checkpoint=PATH'):
        OpenCLIPBackbone(model_name='ViT-B-16', pretrained='laion2b_s34b_b88k')
    assert time.time() - start < 30
