"""FrozenSeg on FC-CLIP's parts, tiny random models: the released-defect options against hand computations,
the corrected behaviour, inference outputs, proposals and the training loss."""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from mmseg.structures import SegDataSample

import ovseg.models  # noqa: F401  registers the models
from ovseg.models.fcclip.ms_deform_attn import MSDeformAttn
from ovseg.models.frozenseg import proposal_ensemble, proposals_for_pooling
from ovseg.ops.ms_deform_attn import multi_scale_deformable_attn_pytorch
from ovseg.registry import MODELS
from ovseg.testing.fcclip import tiny_frozenseg_cfg


def _attn(mode, seed=0):
    torch.manual_seed(seed)
    attn = MSDeformAttn(embed_dim=16, num_levels=3, num_heads=2, num_points=2, level_mismatch=mode)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.3)
    return attn


def _one_level_inputs(batch=2, size=(4, 5)):
    torch.manual_seed(1)
    q = size[0] * size[1]
    value = torch.randn(batch, q, 16)
    shapes = torch.tensor([size])
    ref = torch.rand(batch, q, 1, 2)
    return value, shapes, ref


def test_cuda_kernel_mode_reads_the_buffers_with_the_one_level_stride():
    """Hand computation of the compiled kernel on 3-level offsets and 1 value level: query q, head m, point
    p of image b reads flat entry ((b*Lq + q)*M + m)*P + p of the (B, Lq, M, 3, P) buffers."""
    attn = _attn('cuda_kernel')
    value, shapes, ref = _one_level_inputs()
    b, lq = value.shape[:2]
    m, p = attn.num_heads, attn.num_points
    offsets = attn.sampling_offsets(value).view(b, lq, m, 3, p, 2)
    weights = attn.attention_weights(value).view(b, lq, m, 3 * p).softmax(-1).view(b, lq, m, 3, p)
    loc = ref[:, :, None, :, None, :] + offsets / torch.tensor([5.0, 4.0])
    flat_loc, flat_w = loc.reshape(-1, 2), weights.reshape(-1)
    index = torch.arange(b * lq * m * p)
    v = attn.value_proj(value).view(b, lq, m, 8)
    expected = multi_scale_deformable_attn_pytorch(v, shapes, flat_loc[index].view(b, lq, m, 1, p, 2),
                                                   flat_w[index].view(b, lq, m, 1, p))
    out = attn(value, ref, value, shapes, torch.tensor([0]))
    torch.testing.assert_close(out, attn.output_proj(expected), atol=1e-6, rtol=1e-5)
    # the weights a query uses do not sum to one per head (another query's 4 of 12 softmax entries)
    assert not torch.allclose(flat_w[index].view(b, lq, m, p).sum(-1), torch.ones(b, lq, m))


def test_fold_mode_equals_the_single_map_given_for_every_level():
    """'fold' = the 1-level value replicated as all 3 configured levels (each query's own 12 points)."""
    attn = _attn('fold')
    value, shapes, ref = _one_level_inputs()
    out = attn(value, ref, value, shapes, torch.tensor([0]))
    plain = _attn(None)
    tripled = torch.cat([value] * 3, 1)
    shapes3 = shapes.repeat(3, 1)
    starts = torch.tensor([0, 20, 40])
    torch.testing.assert_close(out, plain(value, ref.expand(-1, -1, 3, -1), tripled, shapes3, starts),
                               atol=1e-6, rtol=1e-5)


def test_level_mismatch_without_a_mode_is_an_error():
    attn = _attn(None)
    value, shapes, ref = _one_level_inputs()
    with pytest.raises(ValueError, match='built for 3 levels got 1'):
        attn(value, ref, value, shapes, torch.tensor([0]))


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    released = MODELS.build(tiny_frozenseg_cfg(thing_classes=[0, 1])).eval()
    corrected = MODELS.build(tiny_frozenseg_cfg(thing_classes=[0, 1], behaviour='corrected')).eval()
    corrected.load_state_dict(released.state_dict())
    return released, corrected


def test_behaviour_sets_the_parts(models):
    released, corrected = models
    assert released.sam_branch.encoder_layers[0].self_attn.level_mismatch == 'cuda_kernel'
    assert corrected.sam_branch.encoder_layers[0].self_attn.level_mismatch == 'fold'
    assert (released.injector.key_pos, corrected.injector.key_pos) == ('none', 'clip')
    assert (released.proposal_cfg['pooling'], corrected.proposal_cfg['pooling']) == ('released', 'aligned')
    assert sorted(released.injector.feature_injectors) == ['0', '3']  # layers reading level 0 (of 4)
    with pytest.raises(ValueError, match='behaviour'):
        MODELS.build(tiny_frozenseg_cfg(behaviour='fixed'))


def test_predict_outputs_and_corrected_behaviour_differs(models):
    released, corrected = models
    torch.manual_seed(3)
    x = torch.randn(1, 3, 80, 96)
    meta = dict(img_shape=(80, 96), ori_shape=(120, 144))
    outs = []
    for model in models:
        with torch.no_grad():
            [result] = model.predict(x, [SegDataSample(metainfo=dict(meta))])
        assert result.seg_logits.data.shape == (3, 120, 144)
        assert result.pred_panoptic_seg.data.shape == (1, 120, 144)
        assert result.pred_instances.masks.shape[-2:] == (120, 144)
        outs.append(model.inference(x, [meta]))
    assert outs[0]['sam_feature'].shape == (1, 32, 4, 4)
    assert not torch.allclose(outs[0]['sam_feature'], outs[1]['sam_feature'])
    assert not torch.allclose(outs[0]['pred_logits'], outs[1]['pred_logits'])


def test_sam_input_zeroes_the_padding_in_sam_units(models):
    model = models[0]
    x = torch.randn(1, 3, 64, 96)
    padded = model._pad(x[..., :50, :70])
    sam = model.sam_inputs(padded, [(50, 70)])
    assert sam.shape == (1, 3, 128, 128)
    direct = model.sam_inputs(padded)  # without the valid shape the CLIP zeros become SAM values
    assert not torch.allclose(sam, direct)
    raw = padded * model.pixel_std + model.pixel_mean
    expected = (raw - model.sam.model.pixel_mean) / model.sam.model.pixel_std
    expected[..., 50:, :] = 0
    expected[..., 70:] = 0
    torch.testing.assert_close(sam, torch.nn.functional.interpolate(expected, size=(128, 128), mode='bilinear',
                                                                    align_corners=False))


def test_proposal_pooling_modes():
    logits = torch.randn(3, 40, 50)
    released = proposals_for_pooling(logits, (3, 4))
    assert released.shape == (1, 3, 32, 32) and (released[..., 3:, :] == 0).all()
    torch.testing.assert_close(released[0, :, :3, :4],
                               torch.nn.functional.interpolate(logits[None], size=(3, 4), mode='nearest')[0])
    aligned = proposals_for_pooling(logits, (3, 4), valid_shape=(80, 100), padded_shape=(96, 128),
                                    mode='aligned')
    assert aligned.shape == (1, 3, 96, 128) and (aligned[..., 80:, :] == 0).all()


def test_proposal_ensemble_against_hand_computation():
    torch.manual_seed(0)
    q, m, k = 5, 4, 3
    mask_cls, masks = torch.randn(q, k + 1), torch.randn(q, 6, 7)
    props, prop_cls = torch.randn(m, 6, 7), torch.randn(m, k + 1) * 4
    seen = torch.tensor([True, False, False])
    sem, keep, unseen_max = proposal_ensemble(mask_cls, masks, props, prop_cls, seen, alpha=0.2)
    p = mask_cls.softmax(-1)[:, :-1]
    s = prop_cls.softmax(-1)[:, :-1]
    assert torch.equal(keep, s[:, 1:].max(1).values > 0.5)
    expected = torch.zeros(k, 6, 7)
    for c in range(k):
        w = 1.0 if seen[c] else 0.8
        expected[c] = (w * p[:, c, None, None] * masks.sigmoid()).sum(0)
        if not seen[c]:
            expected[c] += (0.2 * s[keep, c, None, None] * props[keep].sigmoid()).sum(0)
    torch.testing.assert_close(sem, expected)


def test_predict_with_proposals_and_without(models):
    model = models[0]
    model.use_proposals = True
    saved = dict(model.test_cfg)
    model.test_cfg.update(panoptic_on=False, instance_on=False)
    try:
        x = torch.randn(1, 3, 64, 96)
        for num in (3, 0):  # an image whose proposal file is empty falls back to the decoder's masks
            meta = dict(img_shape=(64, 96), ori_shape=(64, 96), sam_proposal_logits=torch.randn(num, 64, 96))
            with torch.no_grad():
                [result] = model.predict(x, [SegDataSample(metainfo=meta)])
            assert result.seg_logits.data.shape == (3, 64, 96)
        with pytest.raises(KeyError, match='sam_proposal_logits'):
            model.predict(x, [SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96)))])
    finally:
        model.use_proposals = False
        model.test_cfg.update(saved)


def test_training_loss_backpropagates_into_the_head_not_sam_or_clip():
    torch.manual_seed(0)
    model = MODELS.build(tiny_frozenseg_cfg()).train()
    sample = SegDataSample(metainfo=dict(img_shape=(128, 128)))
    masks = torch.zeros(2, 128, 128, dtype=torch.bool)
    masks[0, :64], masks[1, 64:] = True, True
    sample.gt_instances = InstanceData(labels=torch.tensor([0, 2]), masks=masks)
    losses = model.loss(torch.randn(1, 3, 128, 128), [sample])
    assert {'loss_ce', 'loss_mask', 'loss_dice'} <= set(losses)
    sum(losses.values()).backward()
    assert model.injector.feature_injectors['0'].attn.in_proj_weight.grad is not None
    assert model.sam_branch.fpn[0].weight.grad is not None
    assert all(p.grad is None for p in model.sam.parameters())
    assert all(p.grad is None for p in model.backbone.parameters())


def test_load_sam_proposals(tmp_path):
    from ovseg.registry import TRANSFORMS
    logits = np.random.default_rng(0).normal(size=(3, 6, 7)).astype(np.float16)
    np.savez(tmp_path / '0001.npz', logits=logits, predicted_iou=np.ones(3))
    load = TRANSFORMS.build(dict(type='LoadSAMProposals', proposal_dir=str(tmp_path)))
    out = load(dict(img_path='images/0001.jpg', ori_shape=(6, 7)))
    assert out['sam_proposal_logits'].dtype == np.float32
    np.testing.assert_array_equal(out['sam_proposal_logits'], logits.astype(np.float32))
    with pytest.raises(FileNotFoundError, match='0002.npz'):
        load(dict(img_path='images/0002.jpg', ori_shape=(6, 7)))
    empty = TRANSFORMS.build(dict(type='LoadSAMProposals', proposal_dir=str(tmp_path), missing='empty'))
    assert empty(dict(img_path='x/0002.jpg', ori_shape=(6, 7)))['sam_proposal_logits'].shape == (0, 6, 7)
