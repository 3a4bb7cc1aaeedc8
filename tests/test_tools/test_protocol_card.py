"""tools/analysis/protocol_card.py: the cards of the benchmark configs equal their originals' protocols.

The expected values are read independently of the code under test: class prompts straight from the
vocabulary data files (each a copy of the original's file, named in its header), FC-CLIP's seen flags
recomputed from its COCO training file the way fcclip.py does, templates from the template module
(compared with the parity manifests in tests/test_text).
"""
import json
from pathlib import Path

import pytest
from mmengine.config import Config

from ovseg.apis.protocol import preprocessing, protocol_card
from ovseg.testing import load_tool, tiny_clip_arch
from ovseg.text.templates import IMAGENET80, MASKCLIP_SCENE5, VILD14
from ovseg.text.vocabulary import VOCABULARY_DIR

REPO = Path(__file__).resolve().parents[2]
FCCLIP = {'configs/fcclip_ade.py': 'ade150', 'configs/fcclip/fcclip_convnext-l_ade847.py': 'ade847',
          'configs/fcclip/fcclip_convnext-l_pc59.py': 'pc59', 'configs/fcclip/fcclip_convnext-l_pc459.py': 'pc459',
          'configs/fcclip/fcclip_convnext-l_voc20.py': 'voc20', 'configs/fcclip/fcclip_convnext-l_voc21.py': 'voc21',
          'configs/fcclip/fcclip_convnext-l_cityscapes.py': 'cityscapes19'}
BENCHMARKS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')


def file_rows(relative):
    """Class rows of a vocabulary data file, split as FC-CLIP splits them (',' only, nothing stripped)."""
    lines = (VOCABULARY_DIR / f'{relative}.txt').read_text().splitlines()
    return [line.split(':', 1)[1].split(',') for line in lines if line and not line.startswith('#')]


def card_of(path, tiny_backbone=True):
    """The card of a config; ``tiny_backbone`` swaps the CLIP tower for a tiny one of the same kind
    (nothing on the card depends on the tower's size; ConvNeXt-L alone takes ~10 s to build)."""
    cfg = Config.fromfile(str(REPO / path))
    if tiny_backbone and cfg.model.type == 'FCCLIPSegmentor':
        cfg.model.backbone = dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('convnext'))
        cfg.model.transformer_decoder.class_head.text_dim = 32
    elif tiny_backbone and cfg.model.type == 'OVSegmentor':
        cfg.model.backbone = dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit'))
        if cfg.model.get('refiner'):
            cfg.model.refiner.update(in_channels=32, token_layer='resblocks.-1.ln_2')
    return protocol_card(cfg, path)


@pytest.mark.parametrize('path', sorted(FCCLIP))
def test_fcclip_cards_follow_fcclip(path):
    """Prompts = FC-CLIP's file class by class; seen = a name in FC-CLIP's COCO list; ViLD templates;
    whole-image inference at short side 800 (Cityscapes 1024), PIL bilinear; detectron2's mIoU."""
    card = card_of(path)
    rows = file_rows(f'fcclip/{FCCLIP[path]}')
    assert [c['prompts'] for c in card['classes']] == rows
    coco = {name for row in file_rows('coco_panoptic133') for name in row}
    assert [c['seen'] for c in card['classes']] == [bool(coco & set(row)) for row in rows]
    assert card['templates'] == list(VILD14) and card['inference'] == dict(mode='whole', crop=None, stride=None)
    resize = card['preprocessing']['resize']
    short, long = (1024, 2560) if 'cityscapes' in path else (800, 1333)
    assert (resize['short_side'], resize['long_side_max']) == (short, long)
    assert (resize['backend'], resize['interpolation'], resize['antialias']) == ('pillow', 'bilinear', True)
    assert card['evaluation']['metrics'][0]['convention'] == 'detectron2'
    assert card['rules']['ensemble']['alpha'] == 0.4 and card['rules']['ensemble']['beta'] == 0.8
    assert 'bytedance/fc-clip@' in card['source']['templates']


def test_fcclip_voc21_background_has_fcclips_74_prompts_and_is_seen():
    card = card_of('configs/fcclip/fcclip_convnext-l_voc21.py')
    background = card['classes'][0]
    assert len(background['prompts']) == 74 and background['seen'] is True


@pytest.mark.parametrize('name', BENCHMARKS)
def test_clip_dinoiser_cards_follow_clip_dinoiser(name):
    """CLIP-DINOiser's CLASSES one per class, 80 templates, slide 448 / 224 at short side 448, and its
    background rule (top probability < 0.99 and objectness <= 0.5) on VOC-21 and COCO-Object only."""
    card = card_of(f'configs/clip_dinoiser/clip_dinoiser_vit-b16_{name}.py')
    assert [c['prompts'] for c in card['classes']] == file_rows(f'clip_dinoiser/{name}')
    assert all(len(c['prompts']) == 1 and c['seen'] is None for c in card['classes'])
    assert card['templates'] == list(IMAGENET80)
    assert card['inference'] == dict(mode='slide', crop=[448, 448], stride=[224, 224])
    resize = card['preprocessing']['resize']
    assert (resize['short_side'], resize['backend'], resize['interpolation']) == (448, 'cv2', 'bilinear')
    rule = card['rules']['background_rule']
    if name in ('voc21', 'coco_object81'):
        assert rule == dict(class_index=0, class_name='background', top_probability_below=0.99,
                            objectness_at_most=0.5)
    else:
        assert rule is None
    assert card['evaluation']['metrics'][0]['convention'] == 'mmseg'


@pytest.mark.parametrize('name', ['voc21', 'pc59', 'ade150'])
def test_maskclip_cards_use_maskclips_names_and_85_templates(name):
    card = card_of(f'configs/maskclip/maskclip_vit-b16_{name}.py')
    rows = file_rows(f'maskclip/{name}')
    prompts = [c['prompts'] for c in card['classes']]
    if name == 'voc21':  # the background class is scored with stuff names besides its own
        assert prompts[1:] == rows[1:] and prompts[0][0] == 'background' and len(prompts[0]) == 27
        assert card['rules']['background_rule']['scored_with_names']
    else:
        assert prompts == rows
    assert card['templates'] == list(IMAGENET80 + MASKCLIP_SCENE5)


def test_anomaly_cards_show_the_reference_resize():
    """The built test pipelines' decoding and resize (the model plays no part in them)."""
    def card(name):
        return preprocessing(Config.fromfile(str(REPO / 'configs/anomaly' / name)), None)

    winclip = card('winclip_vit-b16-plus-240_mvtec.py')
    assert winclip['decode'] == 'pillow'
    assert winclip['resize'] == dict(transform='TorchvisionResize', scale_wh=[240, 240], keep_ratio=False,
                                     backend='torchvision', interpolation='bicubic', antialias=True,
                                     size_hw=[240, 240])
    musc = card('musc_vit-l14-336_mvtec.py')['resize']
    assert (musc['size_hw'], musc['backend'], musc['interpolation']) == ([518, 518], 'pillow', 'bicubic')


@pytest.mark.parametrize('path,rule', [
    ('configs/sam_clip/clip-dinoiser_vit-b16_samrefine-vit-b_cityscapes19.py', 'reference'),
    ('configs/sam_clip/clip-dinoiser_vit-b16_samrefine-maxprob-vit-b_voc21.py', 'max_prob')])
def test_sam_refinement_cards(path, rule):
    ref = card_of(path)['rules']['sam_refinement']
    assert (ref['resolution'], ref['image_multiple'], ref['failed_rule']) == ('original', 16, rule)


def test_cli_json_and_markdown(tmp_path, capsys):
    tool = load_tool('analysis/protocol_card')
    out = tmp_path / 'card.json'
    tool.main(['configs/clip_dinoiser/clip_dinoiser_vit-b16_voc21.py', '--json', str(out)])
    card = json.loads(out.read_text())
    assert set(card) >= {'classes', 'templates', 'inference', 'preprocessing', 'rules', 'evaluation', 'source'}
    assert 'clip_dinoiser/voc21' in capsys.readouterr().out
    md = tmp_path / 'protocols.md'
    configs = ['configs/maskclip/maskclip_vit-b16_voc20.py', 'configs/anomaly/anomalyclip_vit-l14-336_train-visa.py']
    cards = tool.main(configs + ['--markdown', str(md)])
    assert len(cards) == 1  # the training config has no evaluation protocol: no row
    rows = [line for line in md.read_text().splitlines() if line.startswith('| `configs/')]
    assert rows == [tool.markdown_row(cards[0])]
    assert '`maskclip/voc20`: 20 classes, 20 prompts' in rows[0] and '`maskclip85` (85)' in rows[0]


def test_card_of_a_training_config_without_its_teachers():
    """A training config whose teachers' weights are absent still gets a card (no evaluation part)."""
    card = card_of('configs/clip_dinoiser/clip_dinoiser_train_imagenet.py')
    assert card['evaluation'] is None and card['preprocessing'] is None and 'not built' in card['note']
