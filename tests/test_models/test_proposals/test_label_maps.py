"""Label-map proposals (CorrCLIP's format), map correction and CorrCLIP's restriction on small tensors."""
import numpy as np
import pytest
import torch

from ovseg.models.backbones.corrclip_affinity import mask_class_layout, merge_regions, restricted_affinity
from ovseg.models.proposals import (GeneratedLabelMaps, PrecomputedLabelMaps, SuperpixelProposals, map_correction,
                                    proposals_to_label_map)


def test_label_map_paints_in_ascending_area():
    big = torch.zeros(4, 4, dtype=torch.bool)
    big[:, :3] = True
    small = torch.zeros(4, 4, dtype=torch.bool)
    small[0, :2] = True
    labels = proposals_to_label_map(torch.stack([big, small]))
    # the small mask gets id 1, the big one id 2 and overwrites it where they overlap
    assert labels.tolist() == [[2, 2, 2, 0]] * 4
    assert proposals_to_label_map(torch.zeros(0, 4, 4, dtype=torch.bool), 4, 4).sum() == 0


def test_map_correction_takes_the_mode_smallest_on_ties():
    labels = torch.tensor([[0, 0, 1, 1], [0, 0, 2, 2]])
    pred = torch.tensor([[[5, 6, 3, 4], [7, 8, 9, 9]]])
    out = map_correction(pred, labels)
    # region 1 ties between 3 and 4 -> 3; region 2 -> 9; value 0 (the smallest) untouched
    assert out.tolist() == [[[5, 6, 3, 3], [7, 8, 9, 9]]]
    with pytest.raises(ValueError, match='differ in size'):
        map_correction(pred, labels[:, :3])


def test_precomputed_label_maps_read_corrclip_layout(tmp_path):
    np.savez(tmp_path / 'img_01.npz', instance_mask=np.arange(6, dtype=np.int32).reshape(2, 3))
    source = PrecomputedLabelMaps(str(tmp_path))
    meta = dict(img_path='/data/JPEGImages/img_01.jpg', ori_shape=(2, 3))
    assert source(None, meta).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match='does not match the image size'):
        source(None, dict(meta, ori_shape=(3, 3)))
    with pytest.raises(FileNotFoundError, match='make_label_maps'):
        source(None, dict(meta, img_path='x/other.jpg'))
    with pytest.raises(KeyError, match='no img_path'):
        source(None, dict(ori_shape=(2, 3)))


def test_generated_label_maps_from_superpixels():
    rng = np.random.default_rng(0)
    image = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    image[:, 32:] = 200
    labels = GeneratedLabelMaps(SuperpixelProposals(n_segments=8))(image, {})
    assert labels.shape == (48, 64) and labels.min() >= 0 and len(torch.unique(labels)) > 2


def test_merge_regions_clusters_similar_regions():
    """Regions with equal mean features merge into one cluster; the smallest value stays apart."""
    labels = torch.tensor([[0, 1, 1], [2, 2, 3]])
    feats = torch.tensor([[1., 0], [0, 1], [0, 1], [0, 1], [0, 1], [1, 0]])
    merged, info = merge_regions(labels, feats, eps=0.2)
    assert merged.tolist() == [[0, 10000, 10000], [10000, 10000, 10001]]
    assert info['clusters'].tolist() == [0, 0, 1]
    same, none = merge_regions(torch.tensor([[0, 1]]), feats[:2])
    assert same.tolist() == [[0, 1]] and none == {}


def test_restricted_affinity_scope():
    """Pairs in one proposal are kept; unsegmented pairs only above the window's mean similarity."""
    feats = torch.nn.functional.normalize(torch.tensor([[[1., 0], [1, 0.1], [0, 1], [0.1, 1]]]), dim=-1)
    labels = torch.tensor([[0, 5, 5, 0]])
    aff = restricted_affinity(feats, labels, (2, 2), tau=4.0)
    # similarities ~[[1, .995, 0, .1], [.995, 1, .1, .2], [0, .1, 1, .995], [.1, .2, .995, 1]], mean ~0.55:
    # 1-2 share proposal 5 (kept although dissimilar); 0 and 3 are unsegmented (kept where above the mean)
    kept = (aff.weights[0] > 0).int().tolist()
    assert kept == [[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]
    torch.testing.assert_close(aff.weights.sum(-1), torch.ones(1, 4))


def test_mask_class_layout_masks_and_padding():
    merged = torch.tensor([[[0, 0, 1, 1]] * 4, [[0] * 4] * 4])
    layout = mask_class_layout(merged, (2, 2), (4, 4))
    assert layout.num_tokens == 2 and layout.counts.tolist() == [2, 1]
    allowed = layout.attn_mask[:, 0] == 0
    n = 2
    assert not allowed[:, n:, :n].any()  # image tokens never see mask-class tokens
    assert allowed[0, 0, n] and not allowed[0, 0, 0]  # class token, never itself
    assert allowed[0, 1, n + 1:].tolist() == [False, True, False, True]
    assert not allowed[1, 1, n + 1:].any() and allowed[1, 1, n]  # padding token: class token only
    assert layout.expand.shape == (2, 2, 16) and layout.expand[1, 1].sum() == 0
