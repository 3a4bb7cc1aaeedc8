"""configs/sam_clip: one method layer over _base_, the documented settings, and they build and run tiny."""
import inspect
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ovseg.registry import MODELS
from ovseg.testing import tiny_clip_arch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / 'configs' / 'sam_clip').glob('*.py'))
DATASETS = ('voc21', 'pc60', 'coco_object81', 'voc20', 'pc59', 'coco_stuff171', 'cityscapes19', 'ade150')


def test_every_benchmark_has_all_four_configs():
    names = {p.name for p in CONFIGS}
    for ds in DATASETS:
        assert {f'maskclip_vit-b16_samrefine-vit-b_{ds}.py', f'clip-dinoiser_vit-b16_samrefine-vit-b_{ds}.py',
                f'samproposals-vit-b_maskclip_vit-b16_{ds}.py',
                f'samproposals-vit-b_clip-dinoiser_vit-b16_{ds}.py'} <= names
    readme = (REPO / 'configs' / 'sam_clip' / 'README.md').read_text()
    assert all(p.name in readme for p in CONFIGS)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_settings(path):
    from segment_anything import SamAutomaticMaskGenerator
    cfg = Config.fromfile(str(path))
    text = path.read_text()
    assert '_base_ = [' in text and text.count("'../_base_/") == 4  # leaves inherit only _base_ files
    model = cfg.model
    method, dataset = model.vocabulary.split('/')  # the CLIP method's own class list
    assert path.stem.endswith('_' + dataset) and method.replace('_', '-') in path.stem
    if 'samrefine' in path.stem:
        ref = model.sam_refiner
        assert (ref.iou_thresh, ref.minimal_area, ref.mask_coeff, ref.down_ratio) == (0.8, 225, 0.005, 2)
        assert ref.coarse_thresh == (0.1 if 'cityscapes' in path.stem else 0.2)
        # Trident's protocol: original resolution, its rule for rejected regions; ovseg's rule has its own name
        rule = 'max_prob' if 'samrefine-maxprob' in path.stem else 'reference'
        assert (ref.failed_rule, ref.mask_prompt_layout) == (rule, 'trident')
        assert (ref.resolution, ref.image_multiple) == ('original', 16)
        assert ref.sam.arch == 'vit_b' and ref.sam.checkpoint.endswith('sam_vit_b_01ec64.pth')
    else:
        assert model.type == 'SAMProposalSegmentor' and model.overlap == 'mean'
        stock = inspect.signature(SamAutomaticMaskGenerator).parameters
        for key in ('points_per_side', 'points_per_batch', 'pred_iou_thresh', 'stability_score_thresh',
                    'stability_score_offset', 'box_nms_thresh', 'min_mask_region_area'):
            assert model.proposals[key] == stock[key].default, key


def _tiny(model_cfg):
    """Swap CLIP and SAM for tiny random ones (no weights, no text cache)."""
    model_cfg.backbone = dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit'))
    model_cfg.text_classifier.update(cache_dir=None, templates='single')
    model_cfg.test_cfg = dict(mode='slide', crop_size=64, stride=32)
    if model_cfg.get('refiner'):
        model_cfg.refiner.in_channels = 32
        model_cfg.refiner.token_layer = 'resblocks.-1.ln_2'
    tiny_sam = dict(type='SAMPredictor', arch='tiny', image_size=256)
    if model_cfg.get('sam_refiner'):
        model_cfg.sam_refiner.sam = tiny_sam
    if model_cfg.get('proposals'):
        model_cfg.proposals.sam = tiny_sam
        model_cfg.proposals.points_per_side = 4
    return model_cfg


@pytest.mark.parametrize('name', ['maskclip_vit-b16_samrefine-vit-b_voc21.py',
                                  'samproposals-vit-b_clip-dinoiser_vit-b16_voc21.py'])
def test_configs_build_and_predict_with_tiny_models(name, tmp_path):
    """The refinement reads the original image (Trident's protocol), here a 100 x 120 file."""
    import cv2
    import numpy as np
    from mmseg.structures import SegDataSample
    cfg = Config.fromfile(str(REPO / 'configs' / 'sam_clip' / name))
    model = MODELS.build(_tiny(cfg.model)).eval()
    path = tmp_path / 'img.png'
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8))
    sample = SegDataSample(metainfo=dict(img_shape=(64, 77), ori_shape=(100, 120), img_path=str(path)))
    out = model.predict(torch.randn(1, 3, 64, 80), [sample])[0]
    assert out.seg_logits.data.shape == (21, 100, 120) and out.pred_sem_seg.data.shape == (1, 100, 120)
