"""configs/sam2_clip and configs/sam3: one method layer over _base_, the documented settings, tiny runs."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from ovseg.registry import MODELS
from ovseg.testing import tiny_clip_arch
from ovseg.testing.sam_hf import TINY_SAM2_SIZE, TINY_SAM3_SIZE

pytest.importorskip('transformers')
REPO = Path(__file__).resolve().parents[2]
SAM2_CONFIGS = sorted((REPO / 'configs' / 'sam2_clip').glob('*.py'))
SAM3_CONFIGS = sorted((REPO / 'configs' / 'sam3').glob('*.py'))
DATASETS = ('voc21', 'pc60', 'coco_object81', 'voc20', 'pc59', 'coco_stuff171', 'cityscapes19', 'ade150')
# SegEarth-OV3 settings per dataset (confidence threshold, background threshold): configs/sam3/README.md
SAM3_SETTINGS = dict(voc21=(0.5, 0.4), pc60=(0.3, 0.1), coco_object81=(0.5, 0.4), voc20=(0.2, None),
                     pc59=(0.3, None), coco_stuff171=(0.2, None), cityscapes19=(0.3, None),
                     ade150=(0.3, None), ade847=(0.5, None))


def _segment_anything_twin(path):
    name = path.name.replace('sam2-hiera-l', 'vit-b')
    return Config.fromfile(str(REPO / 'configs' / 'sam_clip' / name))


def test_every_benchmark_has_the_sam2_configs_and_readmes_list_them():
    names = {p.name for p in SAM2_CONFIGS}
    for ds in DATASETS:
        assert {f'maskclip_vit-b16_samrefine-sam2-hiera-l_{ds}.py',
                f'clip-dinoiser_vit-b16_samrefine-sam2-hiera-l_{ds}.py',
                f'samproposals-sam2-hiera-l_maskclip_vit-b16_{ds}.py',
                f'samproposals-sam2-hiera-l_clip-dinoiser_vit-b16_{ds}.py'} <= names
    assert {p.stem for p in SAM3_CONFIGS} == {f'sam3_{ds}' for ds in SAM3_SETTINGS}
    for folder, configs in (('sam2_clip', SAM2_CONFIGS), ('sam3', SAM3_CONFIGS)):
        readme = (REPO / 'configs' / folder / 'README.md').read_text()
        assert all(p.name in readme for p in configs)


@pytest.mark.parametrize('path', SAM2_CONFIGS, ids=lambda p: p.stem)
def test_sam2_configs_keep_the_segment_anything_settings(path):
    """Same thresholds and rules whatever the backend: only the SAM module (and the mask-prompt layout,
    which SAM 2 takes batched) differ from the segment-anything twin config."""
    text = path.read_text()
    assert text.count("'../_base_/") == 4 and "'../_base_/models/sam2_hiera-l.py'" in text
    ours, twin = Config.fromfile(str(path)).model.to_dict(), _segment_anything_twin(path).model.to_dict()
    key = 'sam_refiner' if 'samrefine' in path.stem else 'proposals'
    sam, twin_sam = ours[key].pop('sam'), twin[key].pop('sam')
    assert sam == dict(type='SAM2Predictor', pretrained='facebook/sam2.1-hiera-large')
    assert twin_sam['type'] == 'SAMPredictor'
    if key == 'sam_refiner':
        layouts = (ours[key].pop('mask_prompt_layout'), twin[key].pop('mask_prompt_layout'))
        assert layouts == ('batched', 'trident')
    assert ours == twin


@pytest.mark.parametrize('path', SAM3_CONFIGS, ids=lambda p: p.stem)
def test_sam3_config_settings(path):
    cfg = Config.fromfile(str(path))
    text = path.read_text()
    assert text.count("'../_base_/") == 3  # the model, the dataset and the runtime only
    dataset = path.stem[len('sam3_'):]
    model = cfg.model
    assert model.type == 'SAM3Segmentor' and model.vocabulary == dataset
    assert model.sam3 == dict(type='SAM3TextPrompter', pretrained='facebook/sam3')
    confidence, background = SAM3_SETTINGS[dataset]
    assert model.confidence_threshold == confidence and model.synonyms == 'first'
    assert (model.get('background') or {}).get('thresh') == background
    assert (model.use_instances, model.use_semantic, model.use_presence) == (True, True, True)
    assert model.test_cfg == dict(mode='whole') and model.precision == 'fp32'
    for loader in (cfg.test_dataloader, cfg.val_dataloader):
        types = [step['type'] for step in loader.dataset.pipeline]
        assert 'Resize' not in types and types[0] == 'LoadImageFromFile' and types[-1] == 'PackSegInputs'


def test_sam2_and_sam3_configs_build_and_predict_with_tiny_models():
    path = REPO / 'configs/sam2_clip/samproposals-sam2-hiera-l_maskclip_vit-b16_voc21.py'
    cfg = Config.fromfile(str(path)).model
    cfg.backbone = dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit'))
    cfg.text_classifier.update(cache_dir=None, templates='single')
    cfg.test_cfg = dict(mode='whole')
    cfg.proposals.sam = dict(type='SAM2Predictor', arch='tiny', image_size=TINY_SAM2_SIZE)
    cfg.proposals.points_per_side = 4
    out = MODELS.build(cfg).eval().predict(torch.rand(1, 3, 64, 80) * 255)[0]
    assert out.seg_logits.data.shape == (21, 64, 80)
    cfg = Config.fromfile(str(REPO / 'configs/sam3/sam3_ade150.py')).model
    cfg.sam3 = dict(type='SAM3TextPrompter', arch='tiny', image_size=TINY_SAM3_SIZE)
    cfg.prompt_batch = 75
    out = MODELS.build(cfg).predict(torch.rand(1, 3, 40, 56) * 255)[0]
    assert out.seg_logits.data.shape == (150, 40, 56) and out.pred_sem_seg.data.shape == (1, 40, 56)
