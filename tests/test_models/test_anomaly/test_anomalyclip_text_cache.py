"""AnomalyCLIP's learned-prompt text features: computed once at test time, recomputed when they change.

Without gradients ``AnomalyCLIPHead.text_features`` reuses its last result while the prompt learner's
and the text tower's tensors are the same and unmodified (storage and in-place version counters);
with gradients (training) it always recomputes, and ``train()`` drops the cache.
"""
import pytest
import torch

import ovseg.models.decode_heads.anomalyclip_head as head_module
from ovseg.registry import MODELS
from ovseg.testing import tiny_clip_arch

HEAD = dict(type='AnomalyCLIPHead', n_ctx=4, text_depth=2, text_n_ctx=2, features=(1, 2), vv_blocks=1)


def _model():
    arch = tiny_clip_arch('vit')
    arch['text_cfg']['layers'] = 2
    return MODELS.build(dict(type='AnomalyCLIPSegmentor', backbone=dict(type='OpenCLIPBackbone', arch=arch),
                             head=HEAD)).eval()


@pytest.fixture
def calls(monkeypatch):
    """Counts the text-tower passes of the head."""
    count = [0]
    encode = head_module.encode_learned_prompts

    def counting(*args, **kwargs):
        count[0] += 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(head_module, 'encode_learned_prompts', counting)
    return count


def test_predict_encodes_the_prompts_once(calls):
    torch.manual_seed(0)
    model = _model()
    x = torch.randn(2, 3, 64, 64)
    first = model.predict(x)
    second = model.predict(x)
    assert calls[0] == 1
    torch.testing.assert_close(first[0].anomaly_map.data, second[0].anomaly_map.data, rtol=0, atol=0)
    with torch.enable_grad():
        fresh = model.head.text_features(model.backbone)  # with gradients: recomputed, differentiable
    assert calls[0] == 2 and fresh.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(model.head.text_features(model.backbone), fresh.detach(), rtol=0, atol=0)
    assert calls[0] == 2


def test_cache_follows_the_prompts(calls):
    torch.manual_seed(0)
    model, other = _model(), _model()
    head, backbone = model.head, model.backbone
    with torch.no_grad():
        before = head.text_features(backbone)
        head.prompt_learner.ctx_pos.add_(0.5)  # in place: same storage, new version
        changed = head.text_features(backbone)
        assert calls[0] == 2 and not torch.equal(before, changed)
        model.load_state_dict(other.state_dict())  # copies into the same storage
        loaded = head.text_features(backbone)
        torch.testing.assert_close(loaded, other.head.text_features(other.backbone), rtol=0, atol=0)
        head.prompt_learner.ctx_neg.data = head.prompt_learner.ctx_neg.data + 0.5  # new storage
        assert not torch.equal(head.text_features(backbone), loaded)
        text_weight = model.backbone.clip.ln_final.weight
        text_weight.mul_(2.0)  # the text tower counts too
        head.text_features(backbone)
    assert calls[0] == 6  # every change above recomputed (the other model once)


def test_training_step_and_train_mode_invalidate(calls):
    torch.manual_seed(0)
    model = _model()
    head, backbone = model.head, model.backbone
    with torch.no_grad():
        before = head.text_features(backbone)
    model.train()
    assert head._text_cache is None
    optim = torch.optim.SGD(head.parameters(), lr=1.0)
    loss = head.text_features(backbone)[1].sum()  # differentiable in training
    loss.backward()
    optim.step()
    model.eval()
    with torch.no_grad():
        after = head.text_features(backbone)
    assert calls[0] == 3 and not torch.equal(before, after)
