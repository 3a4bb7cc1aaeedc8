"""VFMBackbone (DINO / DINOv2 / MAE from timm): names, weights, positional embeddings, features; no network."""
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.backbones import VFM_ARCHS, VFMBackbone, WeightsUnavailableError
from ovseg.models.backbones.vfm_loader import convert_vfm_state_dict, resolve_vfm, resolve_vfm_pretrained

TINY = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.mark.parametrize('name', sorted(VFM_ARCHS))
def test_vfm_archs_are_timm_models(name):
    import timm
    arch, tag, mode = resolve_vfm(name)
    assert f'{arch}.{tag}' in timm.list_pretrained(arch + '*')
    assert mode in ('bicubic_scale', 'timm', 'bicubic')


@pytest.mark.parametrize('name,patch,prefix', [('dino_vits16', 16, 1), ('dino_vitb8', 8, 1), ('dinov2_vits14', 14, 1),
                                               ('dinov2_vitb14_reg', 14, 5)])
@pytest.mark.parametrize('feature', ['norm', 'q+k', 'v', 'tokens'])
def test_vfm_backbone_shapes(name, patch, prefix, feature):
    vfm = VFMBackbone(name, model_kwargs=TINY, feature=feature).eval()
    x = torch.randn(2, 3, 5 * patch, 3 * patch)
    with torch.no_grad():
        out = vfm(x)
    assert out.dense.shape == (2, 32, 5, 3) and vfm.stride == patch
    assert vfm.tower.num_prefix == prefix and out.cls_tokens[feature].shape == (2, 32)


def test_vfm_backbone_matches_timm_forward_at_native_size():
    """At the stored grid no resize happens: the final norm equals timm's ``forward_features``."""
    vfm = VFMBackbone('dinov2_vits14_reg', model_kwargs=dict(TINY, img_size=70)).eval()
    x = torch.randn(1, 3, 70, 70)
    with torch.no_grad():
        ours = vfm(x).dense.flatten(2).transpose(1, 2)
        ref = vfm.trunk.forward_features(x)[:, vfm.trunk.num_prefix_tokens:]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)


def test_vfm_backbone_q_plus_k_and_layer():
    """'q+k' is the sum of the chosen block's query and key projections (heads concatenated)."""
    vfm = VFMBackbone('dino_vits8', model_kwargs=TINY, feature='q+k', layer=0).eval()
    x = torch.randn(1, 3, 32, 24)
    with torch.no_grad():
        t = vfm.trunk
        tokens = t.norm_pre(vfm.tower.embed(x)[0])
        qkv = t.blocks[0].attn.qkv(t.blocks[0].norm1(tokens))[0, 1:]
        want = (qkv[:, :32] + qkv[:, 32:64]).T.reshape(1, 32, 4, 3)
        torch.testing.assert_close(vfm(x).dense, want, rtol=0, atol=1e-6)


def test_dino_pos_embed_uses_the_scale_factor():
    """DINO resizes with the scale factor (g + 0.1) / g0, which samples differently from the size."""
    vfm = VFMBackbone('dino_vits8', model_kwargs=TINY)
    assert vfm.pos_mode == 'bicubic_scale'
    x = torch.randn(1, 3, 40, 40)
    scaled, _, _ = vfm.tower.embed(x)
    sized, _, _ = vfm.tower.embed(x, 'bicubic')
    assert not torch.allclose(scaled, sized)
    assert VFMBackbone('dinov2_vits14_reg', model_kwargs=TINY).pos_mode == 'timm'
    assert VFMBackbone('mae_vitb16', model_kwargs=TINY).pos_mode == 'bicubic'


def test_official_dinov2_checkpoint_is_converted(tmp_path):
    """An official DINOv2-reg state dict (register_tokens, mask_token, class position) loads into timm."""
    vfm = VFMBackbone('dinov2_vits14_reg', model_kwargs=dict(TINY, img_size=28))
    timm_state = vfm.trunk.state_dict()
    official = {k: v.clone() for k, v in timm_state.items() if k not in ('reg_token', 'cls_token', 'pos_embed')}
    pos_cls = torch.randn(1, 1, 32)
    official.update(register_tokens=timm_state['reg_token'], mask_token=torch.zeros(1, 32),
                    cls_token=timm_state['cls_token'] - pos_cls,
                    pos_embed=torch.cat([pos_cls, timm_state['pos_embed']], 1))
    converted = convert_vfm_state_dict(official, vfm.trunk)
    torch.testing.assert_close(converted['cls_token'], timm_state['cls_token'])
    path = tmp_path / 'dinov2.pth'
    torch.save(official, path)
    loaded = VFMBackbone('dinov2_vits14_reg', checkpoint=str(path), model_kwargs=dict(TINY, img_size=28))
    torch.testing.assert_close(loaded.trunk.reg_token, timm_state['reg_token'])


def test_checkpoint_mismatch_names_keys(tmp_path):
    path = tmp_path / 'bad.pth'
    torch.save({'cls_token': torch.zeros(1, 1, 32)}, path)
    with pytest.raises(KeyError, match='missing keys'):
        VFMBackbone('dino_vits16', checkpoint=str(path), model_kwargs=TINY)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match='Unknown vision foundation model'):
        VFMBackbone('dino_vitz99')
    with pytest.raises(ValueError, match='feature must be one of'):
        VFMBackbone('dino_vits16', model_kwargs=TINY, feature='keys')


def test_pretrained_offline_error(monkeypatch, tmp_path):
    """No cached weights and no network: one sentence that says how to supply them (never a hang)."""
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(WeightsUnavailableError, match='checkpoint=PATH'):
        resolve_vfm_pretrained('vit_small_patch16_224', 'dino', cache_dir=str(tmp_path))


def test_vfm_is_frozen_and_eval():
    vfm = VFMBackbone('dino_vits16', model_kwargs=TINY)
    vfm.train()
    assert not vfm.trunk.training and not any(p.requires_grad for p in vfm.parameters())


def test_proxy_affinity_is_proxyclips_rule():
    """softmax((S - β mean S) γ) with negative logits excluded, the mean over each image's whole matrix."""
    from ovseg.models.segmentors.proxyclip_segmentor import proxy_affinity
    feats = torch.randn(2, 8, 3, 4)
    aff = proxy_affinity(feats, beta=1.2, gamma=3.0)
    f = F.normalize(feats.flatten(2), dim=1)
    for b in range(2):
        sim = f[b].T @ f[b]
        logits = (sim - sim.mean() * 1.2) * 3.0
        want = logits.masked_fill(logits < 0, float('-inf')).softmax(-1)
        torch.testing.assert_close(aff.weights[b], want)
    assert aff.grid == (3, 4) and aff.value_grid == (3, 4)
