"""MaskCLIP+ key smoothing against a hand computation of MaskCLIP's formula (ViT and ResNet).

MaskCLIP (chongzhou96/MaskCLIP): the ViT keys are the last block's ``ln_1`` tokens through the key rows of
``in_proj`` and then the attention output projection with its bias (``vit.py``, ``TransformerEncoderLayer
.forward(return_qkv=True)``); the ResNet keys are the attention pool's ``k_proj`` as a 1x1 convolution
(``maskclip_head.py``). Smoothing: probabilities p = softmax(100 cos) (N, HW, K); keys normalised over the
*locations* (``F.normalize(k, p=2)`` on (N, HW, C) is dim 1); a location whose top probability is below
``ks_thresh`` takes ``(k kᵀ p)`` at that location. The expected values below are written from these
statements with the tower's weights, not with ovseg's walker.
"""
import pytest
import torch
import torch.nn.functional as F

from ovseg.registry import MODELS
from ovseg.testing import assert_close, tiny_maskclip_cfg


def _smooth(probs, keys, thresh):
    """MaskCLIP's refine_output (key smoothing part) on (B, K, h, w) probs and (B, C, h, w) keys."""
    b, k, h, w = probs.shape
    p = probs.flatten(2).transpose(1, 2)
    key = F.normalize(keys.flatten(2).transpose(1, 2), p=2, dim=1)
    weighted = key @ key.transpose(-2, -1) @ p
    low = (p.max(dim=-1, keepdim=True)[0] < thresh).expand(-1, -1, k)
    p = p.clone()
    p[low] = weighted[low]
    return p.transpose(1, 2).reshape(b, k, h, w)


def _vit_keys_by_hand(visual, x):
    """ln_pre(patches + class + positions) -> blocks as trained -> last block's ln_1 -> out_proj(k)."""
    tokens = visual.conv1(x).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    tokens = visual.ln_pre(torch.cat([cls, tokens], dim=1) + visual.positional_embedding)
    for block in list(visual.transformer.resblocks)[:-1]:
        tokens = block(tokens)
    last = visual.transformer.resblocks[-1]
    d = tokens.shape[-1]
    y = last.ln_1(tokens)
    k = y @ last.attn.in_proj_weight[d:2 * d].t() + last.attn.in_proj_bias[d:2 * d]
    keys = k @ last.attn.out_proj.weight.t() + last.attn.out_proj.bias
    h, w = x.shape[-2] // 16, x.shape[-1] // 16
    return keys[:, 1:].transpose(1, 2).reshape(x.shape[0], d, h, w)


def _resnet_keys_by_hand(visual, x):
    feats = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
    pool = visual.attnpool
    return torch.einsum('bchw,oc->bohw', feats, pool.k_proj.weight) + pool.k_proj.bias[None, :, None, None]


@pytest.mark.parametrize('kind', ['vit', 'resnet'])
def test_key_smoothing_matches_maskclip_formula(kind):
    torch.manual_seed(0)
    model = MODELS.build(tiny_maskclip_cfg(['cat', 'dog', 'sky', 'car'], kind=kind,
                                           kspd=dict(pd_thresh=0.0, ks_thresh=1.0))).eval()
    for p in model.backbone.clip.visual.parameters():  # non-trivial biases and scales
        p.data.normal_(0, 0.3)
    x = torch.randn(2, 3, 64, 64 if kind == 'vit' else 96)  # ViT at its native grid: no resize by hand
    by_hand = _vit_keys_by_hand if kind == 'vit' else _resnet_keys_by_hand
    with torch.no_grad():
        feats = model.extract_feat(x)
        keys = by_hand(model.backbone.clip.visual, x)
        probs = model.head(feats.dense, model.class_embeddings()).softmax(dim=1)
        got = model.scores_from_features(feats)
    depth = 3 if kind == 'vit' else 6
    assert_close(feats.tokens['last_keys'], keys, depth=depth, width=128, name='keys')
    expected = _smooth(probs, keys, 1.0)
    assert_close(got, expected, depth=depth + 2, width=keys.shape[2] * keys.shape[3] * 32, name='smoothed')
    assert not torch.allclose(got, probs, atol=1e-3)  # the rule changed the probabilities


def test_key_smoothing_only_below_threshold():
    """ks_thresh below every top probability leaves the probabilities unchanged."""
    model = MODELS.build(tiny_maskclip_cfg(['cat', 'dog'], kspd=dict(pd_thresh=0.0, ks_thresh=1e-6))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.extract_feat(x)
        probs = model.head(feats.dense, model.class_embeddings()).softmax(dim=1)
        torch.testing.assert_close(model.scores_from_features(feats), probs)


def test_key_smoothing_convnext_is_a_clear_error():
    with pytest.raises(ValueError, match='key smoothing'):
        MODELS.build(tiny_maskclip_cfg(['cat'], kind='convnext', kspd=dict(ks_thresh=1.0)))
