"""MAFT+ on FC-CLIP's parts, tiny random models: content-dependent transfer and losses against hand
computations, the dense-embedding options, inference and training with a fine-tuned trunk."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from mmseg.structures import SegDataSample

import ovseg.models  # noqa: F401  registers the models
from ovseg.models.fcclip.position_encoding import sine_position_encoding
from ovseg.models.maftplus import (ContentDependentTransfer, MAFTMaskAwareLoss, MAFTRepresentationCompensationLoss,
                                   global_pod)
from ovseg.registry import MODELS
from ovseg.testing.fcclip import tiny_maftplus_cfg


@pytest.mark.parametrize('residual', ['semantic', 'panoptic'])
def test_cdt_against_hand_computation(residual):
    torch.manual_seed(0)
    cdt = ContentDependentTransfer(embed_dim=8, num_heads=2, residual=residual)
    with torch.no_grad():
        for p in cdt.parameters():
            p.normal_(0, 0.5)
    image, text = torch.randn(2, 8, 3, 4), torch.randn(5, 8)
    out = cdt(image, text)
    pos = sine_position_encoding(image, 4).flatten(2).transpose(1, 2)
    tokens = image.flatten(2).transpose(1, 2)
    w_q, w_k, w_v = cdt.attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = cdt.attn.in_proj_bias.chunk(3)
    q = (text @ w_q.T + b_q).view(5, 2, 4).transpose(0, 1)  # heads first
    k = ((tokens + pos) @ w_k.T + b_k).view(2, 12, 2, 4).transpose(1, 2)
    v = (tokens @ w_v.T + b_v).view(2, 12, 2, 4).transpose(1, 2)
    att = torch.softmax(q[None] @ k.transpose(-1, -2) / 2.0, -1) @ v  # (B, heads, S, 4)
    attn = att.transpose(1, 2).reshape(2, 5, 8) @ cdt.attn.out_proj.weight.T + cdt.attn.out_proj.bias
    mlp = cdt.mlp(attn)
    expected = cdt.norm(text + mlp) if residual == 'semantic' else text + cdt.norm(mlp)
    torch.testing.assert_close(out.text, expected, atol=1e-5, rtol=1e-5)


def test_panoptic_cdt_starts_as_the_identity():
    cdt = ContentDependentTransfer(embed_dim=8, num_heads=2, residual='panoptic')
    text = torch.randn(5, 8)
    out = cdt(torch.randn(1, 8, 2, 2), text)
    torch.testing.assert_close(out.text[0], text + cdt.norm.bias)  # LayerNorm of a zero row = its bias


def test_mask_aware_loss_against_hand_computation():
    torch.manual_seed(0)
    logits, mask_logits = torch.randn(1, 4, 3 + 1), torch.randn(1, 4, 8, 8)
    gt = torch.zeros(2, 16, 16)
    gt[0, :8], gt[1, 8:, 8:] = 1, 1
    targets = [dict(labels=torch.tensor([2, 0]), masks=gt)]
    loss = MAFTMaskAwareLoss()(logits, mask_logits, targets)
    probs = logits[0, :, :-1].softmax(-1)
    pred = F.interpolate(mask_logits.sigmoid(), size=(16, 16), mode='bilinear', align_corners=False)[0]
    terms = []
    for label, g in zip(targets[0]['labels'], gt):
        inter = (pred * g).flatten(1).sum(1)
        iou = inter / (g.sum() + pred.flatten(1).sum(1) - inter + 1e-7)
        iou = (iou - iou.min()) / (iou.max() - iou.min() + 1e-8)
        terms.append(F.smooth_l1_loss(probs[:, label], iou, reduction='none'))
    torch.testing.assert_close(loss, torch.cat(terms).mean())
    assert MAFTMaskAwareLoss()(logits, mask_logits, [dict(labels=torch.zeros(0, dtype=torch.long),
                                                          masks=torch.zeros(0, 16, 16))]) == 0


def test_global_pod_and_rc_loss():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    emb = global_pod(x, (1, 2))
    s1 = F.avg_pool2d(x, 4)
    s2 = F.avg_pool2d(x, 2)
    expected = torch.cat([s1.sum(2).view(2, -1), s1.sum(3).view(2, -1), s2.sum(2).view(2, -1),
                          s2.sum(3).view(2, -1)], 1)
    torch.testing.assert_close(emb, expected)
    rc = MAFTRepresentationCompensationLoss(loss_weight=0.1)
    assert rc(x, x) == 0
    y = x - 100  # negative maps are clamped to zero first
    torch.testing.assert_close(rc(y.clamp(max=-1), torch.zeros_like(y)), torch.tensor(0.0))
    # 4x6 -> resized to 6x6, kernels 6, 3, 1 (width // scale): 1x1, 2x2, 6x6 pooled maps
    assert global_pod(torch.randn(1, 2, 4, 6), (1, 2, 4)).shape == (1, 2 * (1 + 1 + 2 + 2 + 6 + 6))


def test_dense_embedding_modes():
    model = MODELS.build(tiny_maftplus_cfg(teacher=False)).eval()
    dense = torch.randn(2, 320, 3, 4)
    per_pixel = model.backbone.project_pooled(dense.permute(0, 2, 3, 1).reshape(-1, 320)).view(2, 3, 4, -1)
    model.dense_embedding_mode = 'per_pixel'
    torch.testing.assert_close(model.dense_embedding(dense), per_pixel.permute(0, 3, 1, 2))
    model.dense_embedding_mode = 'released'  # the original's reshape without moving the channels last
    scrambled = model.backbone.project_pooled(dense.reshape(24, 320)).view(2, 3, 4, -1)
    torch.testing.assert_close(model.dense_embedding(dense), scrambled.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match='dense_embedding'):
        MODELS.build(tiny_maftplus_cfg(dense_embedding='pixels'))


def test_inference_uses_only_the_transferred_out_of_vocabulary_probabilities():
    model = MODELS.build(tiny_maftplus_cfg(teacher=False, thing_classes=[0, 1])).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model.inference(x)
        [result] = model.predict(x, [SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96)))])
    assert out['cdt'].text.shape == (1, 4, 32)  # 3 classes + void, per image
    void = out['pred_logits'].softmax(-1)[..., -1:]
    expected = torch.cat([out['out_vocab'].logits[..., :-1].softmax(-1) * (1 - void), void], -1)
    torch.testing.assert_close(out['probs'], expected)
    assert result.seg_logits.data.shape == (3, 64, 96) and 'pred_panoptic_seg' in result


def test_training_fine_tunes_the_trunk_only_through_the_maft_losses():
    torch.manual_seed(0)
    model = MODELS.build(tiny_maftplus_cfg()).train()
    assert model.backbone.clip.visual.trunk.stages.training and not model.backbone.clip.transformer.training
    sample = SegDataSample(metainfo=dict(img_shape=(128, 128)))
    masks = torch.zeros(2, 128, 128, dtype=torch.bool)
    masks[0, :64], masks[1, 64:] = True, True
    sample.gt_instances = InstanceData(labels=torch.tensor([0, 2]), masks=masks)
    losses = model.loss(torch.randn(1, 3, 128, 128), [sample])
    assert {'loss_ce', 'loss_mask', 'loss_dice', 'ranking_loss', 'rc_loss'} <= set(losses)
    stem = model.backbone.clip.visual.trunk.stem[0].weight
    (losses['loss_ce'] + losses['loss_mask']).backward(retain_graph=True)
    assert stem.grad is None or stem.grad.abs().sum() == 0  # the head reads detached CLIP features
    (losses['ranking_loss'] + losses['rc_loss']).backward()
    assert stem.grad.abs().sum() > 0 and model.cdt.attn.in_proj_weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.backbone.clip.visual.head.mlp.fc1.weight.grad is None  # the CLIP head stays frozen
