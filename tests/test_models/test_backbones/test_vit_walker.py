"""The ViT walker, its towers and per-block attention strategies, against hand computations."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ovseg  # noqa: F401
from ovseg.models.backbones import Affinity, OpenCLIPBackbone, affinity_from_features, affinity_from_masks, walk
from ovseg.models.backbones.affinity import gaussian_neighbourhood, same_mask
from ovseg.models.backbones.vit_dense import vit_dense_forward
from ovseg.models.backbones.vit_towers import vit_tower
from ovseg.models.backbones.vit_walker import build_strategies
from ovseg.registry import MODELS
from ovseg.testing import tiny_clip_arch

ATOL = dict(atol=2e-5, rtol=1e-5)  # float32 sums of <= 128 terms of size <= 10, a few stages deep


@pytest.fixture(scope='module')
def visual():
    torch.manual_seed(0)
    bb = OpenCLIPBackbone(arch=tiny_clip_arch('vit')).eval()
    for p in bb.clip.visual.parameters():
        p.data.normal_(0, 0.3)
    return bb.clip.visual


def _pre_last(visual, x):
    """Embedded tokens through every block but the last, with open_clip's own modules."""
    tokens = visual.conv1(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), tokens], 1) + visual.positional_embedding
    tokens = visual.ln_pre(tokens)
    for block in list(visual.transformer.resblocks)[:-1]:
        tokens = block(tokens)
    return tokens


def _qkv(block, y):
    """(B, N, D) -> q, k, v as (B, heads, N, d) from the packed projection."""
    b, n, d = y.shape
    h = block.attn.num_heads
    qkv = y @ block.attn.in_proj_weight.t() + block.attn.in_proj_bias
    return [t.reshape(b, n, h, d // h).transpose(1, 2) for t in qkv.split(d, dim=-1)]


def _merge(o):
    b, h, n, d = o.shape
    return o.transpose(1, 2).reshape(b, n, h * d)


def _by_hand(visual, x, weights_fn, residual, ffn):
    block = visual.transformer.resblocks[-1]
    x0 = _pre_last(visual, x)
    q, k, v = _qkv(block, block.ln_1(x0))
    out = block.attn.out_proj(_merge(weights_fn(q, k, v) @ v))
    out = x0 + out if residual else out
    return out + block.mlp(block.ln_2(out)) if ffn else out


def _run(visual, x, spec):
    return walk(visual, x, strategies=[dict(spec, blocks=-1)]).tokens


def _softmax_logits(a, b):
    return (a @ b.transpose(-2, -1) * a.shape[-1] ** -0.5).softmax(-1)


def test_standard_walk_equals_open_clip(visual):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = vit_tower(visual).pool(walk(visual, x).tokens)
        torch.testing.assert_close(ours, visual(x), **ATOL)
        torch.testing.assert_close(walk(visual, x, taps=('blocks.0',)).taps['blocks.0'],
                                   visual.transformer.resblocks[0](_pre_last_embed(visual, x)), **ATOL)


def _pre_last_embed(visual, x):
    tokens = visual.conv1(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), tokens], 1) + visual.positional_embedding
    return visual.ln_pre(tokens)


@pytest.mark.parametrize('spec,weights_fn,residual,ffn', [
    (dict(type='CorrelativeAttention'), lambda q, k, v: _softmax_logits(q, q) + _softmax_logits(k, k), True, True),
    (dict(type='QueryQueryAttention'), lambda q, k, v: _softmax_logits(q, q), False, False),
    (dict(type='QueryQueryAttention', residual=True, ffn=True), lambda q, k, v: _softmax_logits(q, q), True, True),
    (dict(type='NeighbourhoodAttention', gaussian_std=None), lambda q, k, v: _softmax_logits(k, k), False, False),
    (dict(type='QKAttention', residual=False, ffn=False), lambda q, k, v: _softmax_logits(q, k), False, False),
    (dict(type='MaskCLIPValueAttention'), lambda q, k, v: torch.eye(q.shape[-2]).expand(*q.shape[:2], -1, -1),
     True, True),
])
def test_strategies_match_their_formula(visual, spec, weights_fn, residual, ffn):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(_run(visual, x, spec), _by_hand(visual, x, weights_fn, residual, ffn), **ATOL)


def test_neighbourhood_prior_is_naclips_gaussian(visual):
    """ω(p, p') = exp(-|p - p'|² / (2 std²)) on the patch grid, 0 for the class token (NACLIP)."""
    grid, std = (3, 5), 2.0
    omega = gaussian_neighbourhood(grid, std)
    for a in range(15):
        for b in range(15):
            (r1, c1), (r2, c2) = divmod(a, 5), divmod(b, 5)
            want = torch.exp(torch.tensor(-((r1 - r2) ** 2 + (c1 - c2) ** 2) / (2 * std * std)))
            torch.testing.assert_close(omega[1 + a, 1 + b], want)
    assert omega[0].abs().sum() == 0 and omega[:, 0].abs().sum() == 0
    x = torch.randn(1, 3, 48, 80)  # a 3x5 grid: positional embeddings resized
    tower = vit_tower(visual)
    with torch.no_grad():
        res = walk(tower, x, strategies=[dict(type='NeighbourhoodAttention', gaussian_std=std, blocks=-1)],
                   taps=('blocks.0',), record=('attn.1', 'attn_logits.1'))
        block = visual.transformer.resblocks[-1]
        _, k, _ = _qkv(block, block.ln_1(res.taps['blocks.0']))
        want = (k @ k.transpose(-2, -1) * k.shape[-1] ** -0.5 + omega).softmax(-1)
    torch.testing.assert_close(res.records['attn.1'], want, **ATOL)


def test_external_affinity_on_another_grid(visual):
    """Weights from outside on a 6x6 grid: values resized bilinearly, out_proj(A v), no class token."""
    x = torch.randn(2, 3, 64, 64)
    weights = torch.rand(2, 36, 36).softmax(-1)
    aff = Affinity(weights=weights, grid=(6, 6), value_grid=(6, 6))
    block = visual.transformer.resblocks[-1]
    with torch.no_grad():
        res = walk(visual, x, strategies=[dict(type='ExternalAffinityAttention', blocks=-1)],
                   external={'affinity': aff})
        _, _, v = _qkv(block, block.ln_1(_pre_last(visual, x)))
        v = v[:, :, 1:]
        b, h, n, d = v.shape
        v = F.interpolate(v.transpose(2, 3).reshape(b, h * d, 4, 4), size=(6, 6), mode='bilinear',
                          align_corners=False).reshape(b, h, d, 36).transpose(2, 3)
        want = block.attn.out_proj(_merge(weights[:, None] @ v))
    assert res.grid == (6, 6) and res.num_prefix == 0
    torch.testing.assert_close(res.tokens, want, **ATOL)
    feats = vit_dense_forward(visual, x, attention=[dict(type='ExternalAffinityAttention', blocks=-1)],
                              external={'affinity': aff})
    assert feats.dense.shape[-2:] == (6, 6)
    with pytest.raises(KeyError, match="external input 'affinity'"):
        walk(visual, x, strategies=[dict(type='ExternalAffinityAttention', blocks=-1)])


def test_affinity_helpers_by_hand():
    feats = torch.randn(2, 8, 3, 4)
    f = F.normalize(feats.flatten(2), dim=1)
    sim = f.transpose(1, 2) @ f
    logits = 3.0 * (sim - 1.2 * sim.mean(dim=(1, 2), keepdim=True))
    logits = torch.where(logits < 0, torch.full_like(logits, float('-inf')), logits)
    aff = affinity_from_features(feats, scale=3.0, shift=1.2, min_value=0.0)
    torch.testing.assert_close(aff.weights, logits.softmax(-1))
    assert aff.grid == (3, 4)
    masks = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = True  # top row
    masks[0, 1, :, 0] = True  # left column
    share = same_mask(masks)[0]
    assert share[0].tolist() == [True, True, True, False] and share[3].tolist() == [False, False, False, False]
    weights = affinity_from_masks(masks).weights[0]
    torch.testing.assert_close(weights[0], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0]))
    torch.testing.assert_close(weights[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # in no proposal: itself
    restricted = affinity_from_features(feats[:1, :, :2, :2], restrict=same_mask(masks)).weights[0]
    assert restricted[1, 3] == 0 and restricted[0, 3] == 0


def test_taps_and_strategy_specs(visual):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        res = walk(visual, x, taps=('embed', 'resblocks.-2', 'blocks.1.ln_2', 'blocks.1.norm1', 'blocks.0.q',
                                    'blocks.0.mlp', 'last_keys'))
    assert res.grid == (4, 6) and set(res.taps) == {'embed', 'resblocks.-2', 'blocks.1.ln_2', 'blocks.1.norm1',
                                                   'blocks.0.q', 'blocks.0.mlp', 'last_keys'}
    block = visual.transformer.resblocks[1]
    torch.testing.assert_close(res.taps['blocks.1.norm1'], block.ln_1(res.taps['resblocks.-2']))
    for bad in ('blocks.7', 'blocks.x', 'transformer.0', 'blocks.0.attn'):
        with pytest.raises(KeyError):
            walk(visual, x, taps=(bad,))
    assert set(build_strategies(dict(type='QKAttention', blocks='all'), 4)) == {0, 1, 2, 3}
    assert set(build_strategies([dict(type='QKAttention', blocks=dict(start=-3))], 4)) == {1, 2, 3}
    assert set(build_strategies([dict(type='QKAttention', blocks=[0, -1])], 4)) == {0, 3}
    with pytest.raises(ValueError, match='two attention strategies'):
        build_strategies([dict(type='QKAttention', blocks=-1), dict(type='MaskCLIPValueAttention', blocks=1)], 2)
    with pytest.raises(KeyError, match='outside'):
        build_strategies([dict(type='QKAttention', blocks=5)], 2)


def test_global_embedding_with_strategies_everywhere(visual):
    """The pooled embedding stays the tower's own whatever the strategies (a standard stream is kept)."""
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = vit_dense_forward(visual, x, with_global=True,
                                  attention=[dict(type='CorrelativeAttention', blocks='all')])
        torch.testing.assert_close(feats.global_feat, visual(x), **ATOL)


def _timm_tower(model_name, **kwargs):
    """open_clip's TimmModel around a 2-block timm trunk (open_clip's forward: head(trunk(x)))."""
    import timm
    from open_clip.timm_model import TimmModel
    tower = TimmModel.__new__(TimmModel)
    nn.Module.__init__(tower)
    tower.trunk = timm.create_model(model_name, pretrained=False, depth=2, **kwargs)
    tower.head = nn.Sequential(nn.Linear(tower.trunk.num_features, 32, bias=False)) \
        if kwargs.get('num_classes', 0) == 0 else nn.Sequential()
    return tower.eval()


@pytest.fixture(scope='module')
def siglip_like():
    torch.manual_seed(0)
    return _timm_tower('vit_tiny_patch16_224', img_size=64, num_classes=0, global_pool='map')


@pytest.fixture(scope='module')
def eva_like():
    torch.manual_seed(0)
    return _timm_tower('eva02_tiny_patch14_224', img_size=56, num_classes=32)


def test_timm_vit_tower_global_equals_open_clip(siglip_like):
    """SigLIP-style tower (no class token, attention-pool head): encode_image == walker's pooled output."""
    with torch.no_grad():
        for size in ((64, 64), (48, 80)):
            x = torch.randn(2, 3, *size)
            feats = vit_dense_forward(siglip_like, x, with_global=True, attention=())
            if size == (64, 64):
                torch.testing.assert_close(feats.global_feat, siglip_like(x), **ATOL)
            assert feats.dense.shape == (2, 32, size[0] // 16, size[1] // 16)
        sclip = vit_dense_forward(siglip_like, x, with_global=True,
                                  attention=[dict(type='CorrelativeAttention', blocks=-1)])
    assert sclip.dense.shape == feats.dense.shape and not torch.allclose(sclip.dense, feats.dense)


def test_eva_tower_standard_only(eva_like):
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        feats = vit_dense_forward(eva_like, x, with_global=True, attention=())
        torch.testing.assert_close(feats.global_feat, eva_like(x), **ATOL)
        assert feats.dense.shape == (2, 32, 4, 4)
        # the pooled embedding stays the tower's own when a block runs otherwise (rope on the kept stream)
        masked = vit_dense_forward(eva_like, x, with_global=True,
                                   attention=[dict(type='QKAttention', blocks=-1, mask_key='m')],
                                   external={'m': torch.zeros(17, 17)})
        torch.testing.assert_close(masked.global_feat, eva_like(x), **ATOL)
        with pytest.raises(NotImplementedError, match='EvaBlock'):
            vit_dense_forward(eva_like, x, attention=[dict(type='CorrelativeAttention', blocks=-1)])


def test_strategy_registry_names():
    for name in ('QKAttention', 'MaskCLIPValueAttention', 'ValueValueAttention', 'CorrelativeAttention',
                 'QueryQueryAttention', 'NeighbourhoodAttention', 'ExternalAffinityAttention'):
        assert MODELS.get(name) is not None


def test_open_clip_backbone_with_a_timm_vit_tower():
    """An open_clip config with a timm ViT tower is a 'vit' backbone: MaskCLIP's value path by default."""
    arch = dict(embed_dim=192, vision_cfg=dict(timm_model_name='vit_tiny_patch16_224', timm_model_pretrained=False,
                                              timm_pool='map', timm_proj='none', image_size=224),
                text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
    bb = OpenCLIPBackbone(arch=arch, attention=[dict(type='QueryQueryAttention', blocks=-1)]).eval()
    assert bb.kind == 'vit' and bb.stride == 16
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        feats = bb(x, with_global=True)
        torch.testing.assert_close(feats.global_feat, bb.clip.encode_image(x), **ATOL)
    assert feats.dense.shape == (1, 192, 14, 14)
