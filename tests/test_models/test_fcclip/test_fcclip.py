"""FC-CLIP parts on tiny random models: deformable attention, ensemble, postprocessing, targets, losses,
and the segmentor end to end (predict with any vocabulary, training steps that lower the loss)."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

from ovseg.models.fcclip import geometric_ensemble, seen_class_mask
from ovseg.models.fcclip.ms_deform_attn import MSDeformAttn
from ovseg.models.fcclip.postprocess import instance_inference, panoptic_inference, semantic_inference
from ovseg.models.fcclip.targets import targets_from_samples
from ovseg.models.losses.mask_set_criterion import MaskSetCriterion
from ovseg.ops.ms_deform_attn import multi_scale_deformable_attn_pytorch
from ovseg.registry import MODELS
from ovseg.testing.fcclip import tiny_fcclip_cfg


def _stacked_reference(value, shapes, loc, weights):
    """Deformable DETR's formulation: all levels sampled, stacked, then one weighted sum."""
    b, _, m, d = value.shape
    _, q, _, lv, p, _ = loc.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    samples = []
    for i, (h, w) in enumerate(shapes):
        v = values[i].flatten(2).transpose(1, 2).reshape(b * m, d, h, w)
        g = (2 * loc[:, :, :, i] - 1).transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(v, g, mode='bilinear', padding_mode='zeros', align_corners=False))
    w = weights.transpose(1, 2).reshape(b * m, 1, q, lv * p)
    out = (torch.stack(samples, dim=-2).flatten(-2) * w).sum(-1).view(b, m * d, q)
    return out.transpose(1, 2)


def test_ms_deform_attn_matches_reference_and_samples_pixels():
    shapes = [(6, 5), (3, 3), (2, 1)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 2, 4)
    loc = torch.rand(2, 7, 2, 3, 4, 2) * 1.4 - 0.2  # some points fall outside the maps
    weights = torch.rand(2, 7, 2, 3, 4).softmax(-1)
    out = multi_scale_deformable_attn_pytorch(value, torch.tensor(shapes), loc, weights)
    torch.testing.assert_close(out, _stacked_reference(value, shapes, loc, weights), atol=1e-6, rtol=1e-5)
    # a point at a pixel centre of level 0 with all weight on it returns that pixel's value
    loc = torch.zeros(1, 1, 2, 3, 4, 2)
    loc[..., 0] = (2 + 0.5) / 5
    loc[..., 1] = (4 + 0.5) / 6
    weights = torch.zeros(1, 1, 2, 3, 4)
    weights[:, :, :, 0, 0] = 1
    out = multi_scale_deformable_attn_pytorch(value[:1], torch.tensor(shapes), loc, weights)
    torch.testing.assert_close(out.view(2, 4), value[0, 4 * 5 + 2])


def test_ms_deform_attn_module_initial_offsets():
    attn = MSDeformAttn(embed_dim=8, num_levels=2, num_heads=2, num_points=3)
    bias = attn.sampling_offsets.bias.view(2, 2, 3, 2)
    assert torch.allclose(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0]))  # head 0 looks along +x
    shapes = torch.tensor([[4, 4], [2, 2]])
    start = torch.tensor([0, 16])
    query = torch.randn(1, 20, 8)
    out = attn(query, torch.rand(1, 20, 2, 2), torch.randn(1, 20, 8), shapes, start)
    assert out.shape == (1, 20, 8)


def test_seen_class_mask_uses_any_synonym_exactly_as_fcclip():
    """FC-CLIP compares names exactly (case included): 'Building' does not make 'building' seen."""
    mask = seen_class_mask([['person', 'woman'], ['Flag'], ['wall', 'building'], ['sky']],
                           ['woman', 'car', 'Building ', 'flag', 'sky'])
    assert mask.tolist() == [True, False, False, True]
    assert not seen_class_mask(['cat'], None).any()


def test_seen_flags_of_fcclip_lists_follow_fcclip_rule():
    """Seen flags of FC-CLIP's own lists against its COCO panoptic training list, recomputed here the
    way fcclip.py does (split on ',', set intersection): VOC-21's 74-name background is seen (its names
    include COCO's 'rug', 'building', ...), as are FC-CLIP's ADE-150 'house exterior' unseen and
    'road, route, ...' seen."""
    from ovseg.text import load_vocabulary
    train = {name for cls in load_vocabulary('coco_panoptic133').classes for name in cls}
    for name in ('fcclip/voc21', 'fcclip/voc20', 'fcclip/ade150', 'fcclip/pc59', 'fcclip/pc459',
                 'fcclip/ade847', 'fcclip/cityscapes19'):
        vocab = load_vocabulary(name)
        expected = [bool(train & set(cls)) for cls in vocab.classes]
        assert seen_class_mask(vocab, 'coco_panoptic133').tolist() == expected, name
    voc21 = seen_class_mask('fcclip/voc21', 'coco_panoptic133')
    assert voc21[0] and len(load_vocabulary('fcclip/voc21').classes[0]) == 74
    ade = load_vocabulary('fcclip/ade150')
    seen = dict(zip(ade.names, seen_class_mask(ade, 'coco_panoptic133').tolist()))
    assert seen['road'] and not seen['house exterior']


def test_geometric_ensemble_hand_worked():
    in_logits = torch.log(torch.tensor([[[0.5, 0.3, 0.2]]]))  # K = 2 + void
    out_logits = torch.log(torch.tensor([[[0.2, 0.8]]]))
    res = geometric_ensemble(in_logits, out_logits, torch.tensor([True, False]), alpha=0.4, beta=0.8)
    p_in = torch.tensor([0.625, 0.375])
    ens = torch.stack([p_in[0] ** 0.6 * 0.2 ** 0.4, p_in[1] ** 0.2 * 0.8 ** 0.8]).log()
    probs = torch.cat([ens.softmax(-1) * 0.8, torch.tensor([0.2])])
    torch.testing.assert_close(res['ensemble_log_probs'][0, 0], ens)
    torch.testing.assert_close(res['log_probs'][0, 0], torch.log(probs + 1e-8))
    # probabilities that underflow give -inf for their class, never nan
    res = geometric_ensemble(torch.tensor([[[0.0, -200.0, 0.0]]]), torch.tensor([[[0.0, -200.0]]]),
                             torch.tensor([True, False]))
    assert not torch.isnan(res['log_probs']).any()


def test_panoptic_inference_merges_stuff_and_drops_overlaps():
    h = w = 8
    masks = torch.full((4, h, w), -10.0)
    masks[0, :, :4] = 10  # stuff class 1
    masks[1, :, 4:] = 10  # stuff class 1 again: merged into the first segment
    masks[2, :4, :4] = 10  # thing class 0, scored lower than query 0 on its pixels: loses them all
    masks[3] = 10  # void query: dropped
    cls = torch.log(torch.tensor([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]))
    pan, segments = panoptic_inference(cls, masks, torch.tensor([True, False]))
    assert segments == [dict(id=1, isthing=False, category_id=1)]
    assert (pan == 1).all()
    pan, segments = panoptic_inference(cls, masks, torch.tensor([True, False]), overlap_threshold=0.0)
    assert segments == [dict(id=1, isthing=False, category_id=1)]  # query 2 still wins no pixel


def test_instance_and_semantic_inference():
    masks = torch.randn(3, 5, 6)
    cls = torch.log_softmax(torch.randn(3, 4), -1)
    inst = instance_inference(cls, masks, torch.tensor([True, False, True]), max_per_image=4)
    assert set(inst['labels'].tolist()) <= {0, 2} and len(inst['labels']) <= 4
    assert inst['masks'].dtype == torch.bool and inst['masks'].shape[1:] == (5, 6)
    sem = semantic_inference(cls, masks)
    expected = (cls.softmax(-1)[:, :3, None, None] * masks.sigmoid()[:, None]).sum(0)
    torch.testing.assert_close(sem, expected)


def test_targets_from_samples_sources():
    sem = SegDataSample(gt_sem_seg=PixelData(data=torch.tensor([[[0, 0, 2], [255, 2, 2]]])))
    pan = SegDataSample(metainfo=dict(segments_info=[dict(id=5, label=1, iscrowd=0, isthing=True),
                                                     dict(id=7, label=0, iscrowd=1, isthing=True)]))
    pan.gt_panoptic_seg = PixelData(data=torch.tensor([[[5, 5, 0], [7, 7, 0]]]))
    inst = SegDataSample()
    inst.gt_instances = InstanceData(labels=torch.tensor([3]), masks=torch.ones(1, 2, 3, dtype=torch.bool))
    targets = targets_from_samples([sem, pan, inst], (4, 4), torch.device('cpu'))
    assert targets[0]['labels'].tolist() == [0, 2] and targets[0]['masks'].shape == (2, 4, 4)
    assert targets[0]['masks'][1, :2, :3].tolist() == [[0, 0, 1], [0, 1, 1]]
    assert targets[1]['labels'].tolist() == [1] and targets[1]['masks'][0].sum() == 2  # crowd dropped
    assert targets[2]['masks'][0, 2:].sum() == 0 and targets[2]['masks'][0].sum() == 6  # zero padding


def test_criterion_matches_perfect_predictions():
    crit = MaskSetCriterion(num_classes=3, num_points=64, importance_sample_ratio=0.0)  # uniform points
    tgt_masks = torch.zeros(2, 16, 16)
    tgt_masks[0, :8, :8] = 1
    tgt_masks[1, 8:, 8:] = 1
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, 2, 1] = logits[0, 0, 2] = 5.0
    logits[0, 1, 3] = logits[0, 3, 3] = 5.0  # unmatched queries predict "no object"
    masks = torch.full((1, 4, 16, 16), -20.0)
    masks[0, 2] = (tgt_masks[0] * 40 - 20)
    masks[0, 0] = (tgt_masks[1] * 40 - 20)
    targets = [dict(labels=torch.tensor([1, 2]), masks=tgt_masks)]
    rows, cols = crit.matcher(dict(pred_logits=logits, pred_masks=masks), targets)[0]
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 0]
    gen = torch.Generator()

    def rand(shape, device):
        return torch.rand(shape, generator=gen)

    gen.manual_seed(0)
    losses = crit(dict(pred_logits=logits, pred_masks=masks), targets, rand=rand)
    gen.manual_seed(0)
    blank = crit(dict(pred_logits=logits, pred_masks=torch.zeros_like(masks)), targets, rand=rand)
    assert set(losses) == {'loss_ce', 'loss_mask', 'loss_dice'} and losses['loss_ce'].item() < 0.01
    assert losses['loss_mask'] < 0.5 * blank['loss_mask'] and losses['loss_dice'] < 0.5 * blank['loss_dice']
    empty = crit(dict(pred_logits=logits, pred_masks=masks), [dict(labels=torch.zeros(0, dtype=torch.long),
                                                                   masks=torch.zeros(0, 16, 16))])
    assert empty['loss_mask'].item() == 0


@pytest.fixture(scope='module')
def tiny():
    return MODELS.build(tiny_fcclip_cfg(('cat', 'dog', 'grass'), thing_classes=['cat', 'dog'])).eval()


def test_tiny_fcclip_predict_and_user_vocabulary(tiny):
    x = torch.randn(1, 3, 50, 70)
    sample = SegDataSample(metainfo=dict(img_shape=(50, 70), ori_shape=(100, 140)))
    res = tiny.predict(x, [sample])[0]
    assert res.seg_logits.data.shape == (3, 100, 140) and res.pred_sem_seg.data.shape == (1, 100, 140)
    pan = res.pred_panoptic_seg
    ids = set(pan.data.unique().tolist()) - {0}
    assert ids == {s['id'] for s in pan.segments_info}
    assert all(s['isthing'] == (s['category_id'] < 2) for s in pan.segments_info)
    assert set(res.pred_instances.labels.tolist()) <= {0, 1}
    tiny.set_vocabulary(['a red car', 'sky|clouds'])
    try:
        res = tiny.predict(x)[0]
        assert res.seg_logits.data.shape == (2, 50, 70)
        assert tiny.seen_mask.tolist() == [False, False]
    finally:
        tiny.set_vocabulary(['cat', 'dog', 'grass'], ['cat', 'dog'])


def test_tiny_fcclip_semantic_only_path(tiny):
    tiny.test_cfg.update(panoptic_on=False, instance_on=False)
    try:
        res = tiny.predict(torch.randn(1, 3, 40, 40))[0]
    finally:
        tiny.test_cfg.update(panoptic_on=True, instance_on=True)
    assert res.seg_logits.data.shape == (3, 40, 40) and 'pred_panoptic_seg' not in res


def test_tiny_fcclip_training_lowers_loss():
    torch.manual_seed(0)
    model = MODELS.build(tiny_fcclip_cfg(('cat', 'dog', 'grass'))).train()
    sem = torch.zeros(1, 64, 64, dtype=torch.long)
    sem[:, 20:50, 10:40] = 1
    sem[:, :8] = 255
    samples = [SegDataSample(gt_sem_seg=PixelData(data=sem))]
    x = torch.randn(1, 3, 64, 64)
    params = [p for p in model.parameters() if p.requires_grad]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    optim = torch.optim.AdamW(params, lr=1e-3)
    rand = torch.Generator().manual_seed(0)
    first = last = None
    for _ in range(4):
        rand.manual_seed(0)  # the same points every step: the decrease is the model's, not the sampling's
        losses = model.loss(x, samples, rand=lambda shape, device: torch.rand(shape, generator=rand))
        total = sum(losses.values())
        first = total.item() if first is None else first
        last = total.item()
        optim.zero_grad()
        total.backward()
        optim.step()
    assert len(losses) == 9 and math.isfinite(last) and last < first
