"""SAMProposalSegmentor: mask pooling, overlap rules, SegDataSamples, tools/test.py with tiny models."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmseg.structures import SegDataSample
from PIL import Image

from ovseg.models.proposals.automatic import MaskProposals
from ovseg.models.proposals.mask_pooling import mask_cell_weights, masks_to_scores
from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_maskclip_cfg

REPO = Path(__file__).resolve().parents[3]
TINY_SAM = dict(type='SAMPredictor', arch='tiny', image_size=256)


def proposal_cfg(mode='whole', **overrides):
    cfg = tiny_maskclip_cfg(['cat', 'dog', 'grass'], mode=mode)
    cfg.update(type='SAMProposalSegmentor',
               proposals=dict(type='SAMAutomaticProposals', sam=TINY_SAM, points_per_side=4,
                              pred_iou_thresh=0.0, stability_score_thresh=0.0))
    cfg.update(overrides)
    return cfg


class FixedProposals(torch.nn.Module):
    """Two overlapping rectangles and one empty mask, whatever the image."""

    def forward(self, image):
        h, w = image.shape[:2]
        masks = torch.zeros(3, h, w, dtype=torch.bool)
        masks[0, :32, :32] = True
        masks[1, 16:48, 16:64] = True
        return MaskProposals(masks=masks, iou=torch.tensor([0.9, 0.5, 0.1]), stability=torch.ones(3),
                             boxes=torch.zeros(3, 4, dtype=torch.long), points=torch.zeros(3, 2))


def test_cell_weights_and_overlap_rules():
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0, :16, :16] = True
    masks[1, :8, :32] = True
    weights = mask_cell_weights(masks, (2, 2))
    assert weights.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    fallback = torch.full((2, 32, 32), 0.5)
    mean = masks_to_scores(masks, probs, fallback, 'mean')
    assert mean[:, 0, 0].tolist() == [0.5, 0.5] and mean[:, 12, 0].tolist() == [1.0, 0.0]
    assert mean[:, 31, 31].tolist() == [0.5, 0.5]  # uncovered: fallback
    assert mean[:, 0, 20].tolist() == [0.0, 1.0]
    smallest = masks_to_scores(masks, probs, fallback, 'smallest')  # areas 256 and 256: stable order
    assert smallest[:, 0, 0].tolist() == [0.0, 1.0]
    best = masks_to_scores(masks, probs, fallback, 'best_iou', iou=torch.tensor([0.9, 0.2]))
    assert best[:, 0, 0].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match='needs'):
        masks_to_scores(masks, probs, fallback, 'best_iou')
    with pytest.raises(ValueError, match='rule must be'):
        masks_to_scores(masks, probs, fallback, 'vote')
    assert torch.equal(masks_to_scores(masks[:0], probs[:0], fallback), fallback)


@pytest.mark.parametrize('overlap', ['mean', 'smallest', 'best_iou'])
def test_masks_are_classified_by_pooled_features(overlap):
    model = MODELS.build(proposal_cfg(overlap=overlap)).eval()
    model.proposals = FixedProposals()
    x = torch.randn(1, 3, 64, 96)
    out = model.predict(x)[0]
    feats = model.extract_feat(x)
    pooled = feats.dense[0, :, :2, :2].mean(dim=(1, 2))  # mask 0 covers the top-left 2x2 cells
    expected = model.classify_masks(pooled[None])[0]
    if overlap != 'smallest':  # smallest: the larger mask 0 loses its overlap with mask 1
        torch.testing.assert_close(out.seg_logits.data[:, 2, 2], expected, atol=1e-5, rtol=0)
    dense = model.encode_decode(x)[0]
    torch.testing.assert_close(out.seg_logits.data[:, 60, 90], dense[:, 60, 90], atol=1e-5, rtol=0)
    assert out.pred_sem_seg.data.shape == (1, 64, 96)


def test_predict_shapes_slide_mode_and_background_rule():
    cfg = proposal_cfg(mode='slide', vocabulary=['background', 'cat', 'dog'], background=dict(thresh=1.01))
    model = MODELS.build(cfg).eval()
    sample = SegDataSample(metainfo=dict(img_shape=(72, 100), ori_shape=(144, 200)))
    out = model.predict(torch.randn(1, 3, 80, 112), [sample])[0]
    assert out.seg_logits.data.shape == (3, 144, 200) and out.pred_sem_seg.data.shape == (1, 144, 200)
    assert (out.pred_sem_seg.data == 0).all()  # every mask and pixel is below a threshold above 1
    with pytest.raises(ValueError, match='overlap must be'):
        MODELS.build(proposal_cfg(overlap='vote'))


def _load_tool(name):
    return load_tool(name)


@pytest.mark.parametrize('kind', ['proposals', 'refinement'])
def test_tools_test_runs_tiny_sam_configs(tmp_path, kind):
    rng = np.random.default_rng(0)
    for sub in ('img', 'ann'):
        (tmp_path / sub).mkdir()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / 'img' / 'a.png')
    Image.fromarray(rng.integers(0, 3, (48, 64), dtype=np.uint8)).save(tmp_path / 'ann' / 'a.png')
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type='BaseSegDataset', data_root=str(tmp_path), img_suffix='.png',
                                   seg_map_suffix='.png',
                                   data_prefix=dict(img_path='img', seg_map_path='ann'),
                                   metainfo=dict(classes=('cat', 'dog', 'grass')), pipeline=pipeline))
    if kind == 'proposals':
        model = proposal_cfg()
    else:
        model = tiny_maskclip_cfg(['cat', 'dog', 'grass'], sam_refiner=dict(
            type='SAMRefiner', sam=TINY_SAM, coarse_thresh=0.0, minimal_area=4, iou_thresh=-1e9))
    config = tmp_path / 'cfg.py'
    config.write_text(f"_base_ = ['{REPO / 'configs/_base_/default_runtime.py'}']\n"
                      f'test_dataloader = {dataloader!r}\n'
                      'val_dataloader = test_dataloader\n'
                      "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])\n"
                      'val_evaluator = test_evaluator\n'
                      f'model = {model!r}\n')
    metrics = _load_tool('test').main([str(config), '--work-dir', str(tmp_path / 'work')])
    assert 0.0 <= metrics['mIoU'] <= 100.0
