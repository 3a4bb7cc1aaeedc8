"""FC-CLIP post-processing: the one-pass panoptic inference equals Mask2Former's per-query loop."""
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.fcclip.postprocess import instance_inference, panoptic_inference, semantic_inference


def loop_panoptic(mask_cls, mask_pred, is_thing, object_mask_threshold, overlap_threshold):
    """Mask2Former's panoptic_inference loop, written out as the reference."""
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    keep = labels.ne(mask_cls.shape[-1] - 1) & (scores > object_mask_threshold)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], mask_pred[keep].sigmoid()
    panoptic = torch.zeros(mask_pred.shape[-2:], dtype=torch.int32)
    segments, stuff = [], {}
    if not len(cur_masks):
        return panoptic, segments
    winner = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
    for k in range(len(cur_classes)):
        label = int(cur_classes[k])
        isthing = bool(is_thing[label])
        won, own = winner == k, cur_masks[k] >= 0.5
        mask = won & own
        area, own_area, kept = int(won.sum()), int(own.sum()), int(mask.sum())
        if area == 0 or own_area == 0 or kept == 0 or area / own_area < overlap_threshold:
            continue
        if not isthing and label in stuff:
            panoptic[mask] = stuff[label]
            continue
        new_id = len(segments) + 1
        if not isthing:
            stuff[label] = new_id
        panoptic[mask] = new_id
        segments.append(dict(id=new_id, isthing=isthing, category_id=label))
    return panoptic, segments


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('thresholds', [(0.0, 0.8), (0.3, 0.5), (0.0, 0.0), (0.0, 0.2)])
def test_one_pass_panoptic_equals_the_loop(seed, thresholds):
    gen = torch.Generator().manual_seed(seed)
    queries, classes = 40, 6
    mask_cls = (3 * torch.randn(queries, classes + 1, generator=gen)).log_softmax(-1)
    # few distinct levels: ties in the winner argmax and many stuff segments of one class
    mask_pred = torch.randint(-3, 4, (queries, 24, 32), generator=gen).float() * 2
    is_thing = torch.tensor([True, False, True, False, False, True])
    expected = loop_panoptic(mask_cls, mask_pred, is_thing, *thresholds)
    got = panoptic_inference(mask_cls, mask_pred, is_thing, *thresholds)
    shared = panoptic_inference(mask_cls, mask_pred, is_thing, *thresholds,
                                mask_prob=mask_pred.sigmoid())
    for pan, segments in (got, shared):
        assert torch.equal(pan, expected[0]) and pan.dtype == torch.int32
        assert segments == expected[1]
    if thresholds[1] == 0.0:  # every query that wins a pixel of its own mask gives a segment
        assert len(expected[1]) > 3 and (expected[0] > 0).any()


def test_shared_sigmoid_gives_identical_semantic_and_instance_results():
    gen = torch.Generator().manual_seed(0)
    mask_cls = torch.randn(30, 8, generator=gen).log_softmax(-1)
    mask_pred = torch.randn(30, 16, 20, generator=gen)
    is_thing = torch.tensor([True, False, True, True, False, True, False])
    prob = mask_pred.sigmoid()
    assert torch.equal(semantic_inference(mask_cls, mask_pred),
                       semantic_inference(mask_cls, mask_pred, prob))
    a = instance_inference(mask_cls, mask_pred, is_thing, 50)
    b = instance_inference(mask_cls, mask_pred, is_thing, 50, mask_prob=prob)
    for key in ('scores', 'labels', 'masks'):
        assert torch.equal(a[key], b[key])
    assert a['labels'].numel() > 0 and is_thing[a['labels']].all()


@pytest.mark.parametrize('seed', range(8))
def test_one_pass_panoptic_equals_the_loop_on_overlapping_boxes(seed):
    """Few queries with overlapping box masks: some segments kept at overlap 0.8, some dropped,
    stuff segments of one class merged."""
    gen = torch.Generator().manual_seed(seed)
    queries, classes = 10, 4
    mask_cls = (4 * torch.randn(queries, classes + 1, generator=gen)).log_softmax(-1)
    mask_pred = torch.full((queries, 30, 40), -6.0)
    for q in range(queries):
        y0, x0 = torch.randint(0, 20, (2,), generator=gen).tolist()
        h, w = torch.randint(6, 18, (2,), generator=gen).tolist()
        mask_pred[q, y0:y0 + h, x0:x0 + w] = 2.0 + torch.rand(1, generator=gen).item() * 4
    is_thing = torch.tensor([True, False, False, True])
    expected = loop_panoptic(mask_cls, mask_pred, is_thing, 0.0, 0.8)
    pan, segments = panoptic_inference(mask_cls, mask_pred, is_thing, 0.0, 0.8)
    assert torch.equal(pan, expected[0]) and segments == expected[1]
    assert len(expected[1]) >= 1


@pytest.mark.parametrize('flip', [None, (-1,)])
def test_semantic_in_class_chunks_equals_the_whole_map(flip):
    """The chunked semantic-only path gives the whole computation's scores and argmax (first index on
    ties), whether the scores are kept or not; float differences only from BLAS blocking, far below 1e-6."""
    from ovseg.models.fcclip.postprocess import resize_to_output, semantic_at_output
    from ovseg.testing import assert_close, assert_equal_away_from_ties, tolerance_for, top2_margin
    gen = torch.Generator().manual_seed(0)
    queries, classes = 20, 150
    mask_cls = (2 * torch.randn(queries, classes + 1, generator=gen)).log_softmax(-1)
    mask_cls[:, 7] = mask_cls[:, 3]  # tied classes: the argmax keeps the first
    up = 3 * torch.randn(queries, 64, 80, generator=gen)
    whole = resize_to_output(semantic_inference(mask_cls, up), (60, 75), (90, 110))
    whole = whole.flip(flip) if flip else whole
    for chunk in (1, 7, 64, 400):
        scores, pred = semantic_at_output(mask_cls, up.clone(), (60, 75), (90, 110), chunk, True, flip)
        tol = assert_close(scores, whole, width=queries, depth=3, name=f'chunk {chunk}')
        assert_equal_away_from_ties(pred, whole.argmax(0), top2_margin(whole, 0), tol, max_near_fraction=1.0)
        assert not (pred == 7).any()  # class 7 always ties class 3, which comes first
        lean, lean_pred = semantic_at_output(mask_cls, up.clone(), (60, 75), (90, 110), chunk, False, flip)
        assert lean is None and torch.equal(lean_pred, pred)
