"""OVQuerySegmentor (SCLIP / ClearCLIP / NACLIP protocol), its probability rules, PAMR and the configs."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmseg.structures import SegDataSample

import ovseg  # noqa: F401
from ovseg.models.postprocessors import PAMR, pamr
from ovseg.models.segmentors.query_segmentor import symmetric_pad
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.registry import DATASETS, MODELS
from ovseg.testing import tiny_clip_arch
from ovseg.text import load_vocabulary

REPO = Path(__file__).resolve().parents[3]
BENCHMARKS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')
# (short side, crop, stride or None for whole, logit scale, prob_thd, area_thd) per method and benchmark,
# from each original's configs/cfg_*.py and its segmentor's defaults (README of each config folder).
PROTOCOL = {
    'sclip': {ds: (336, 224, 112, 40.0, 0.0, None) for ds in BENCHMARKS},
    'clearclip': {ds: (448, 448, 224, 50.0, 0.0, None) for ds in BENCHMARKS},
    'naclip': {ds: (336, 224, 112, 40.0, 0.0, None) for ds in BENCHMARKS},
}
PROTOCOL['sclip'].update(voc21=(336, 224, 112, 65.0, 0.1, 0.1), pc60=(336, 224, 112, 50.0, 0.1, None),
                         coco_object81=(336, 224, 112, 50.0, 0.1, None), cityscapes19=(560, 224, 112, 40.0, 0.0, None),
                         coco_stuff171=(448, 224, 112, 40.0, 0.0, None))
PROTOCOL['clearclip'].update(voc21=(448, 448, 224, 50.0, 0.5, None), pc60=(448, 448, 224, 50.0, 0.15, None),
                             coco_object81=(448, 448, 224, 50.0, 0.4, None),
                             cityscapes19=(448, 224, 224, 50.0, 0.0, None))
PROTOCOL['naclip'].update(voc21=(336, None, None, 40.0, 0.1, None), pc60=(336, 224, 112, 40.0, 0.1, None),
                          coco_object81=(336, 224, 112, 40.0, 0.1, None), cityscapes19=(560, 224, 112, 40.0, 0.0, None),
                          coco_stuff171=(448, 224, 112, 40.0, 0.0, None))
STRATEGY = {'sclip': 'CorrelativeAttention', 'clearclip': 'QueryQueryAttention', 'naclip': 'NeighbourhoodAttention'}


def _tiny(method, vocabulary=('cat', 'dog|puppy', 'grass'), **overrides):
    cfg = Config.fromfile(str(REPO / f'configs/{method}/{method}_vit-b16_voc21.py')).model.to_dict()
    cfg['backbone'].update(arch=tiny_clip_arch('vit'), pretrained=None, model_name='custom')
    cfg['text_classifier'].update(templates='single', cache_dir=None)
    cfg.update(vocabulary=list(vocabulary), **overrides)
    return cfg


# --------------------------------------------------------------------------------- probability rules
def test_query_probabilities_follow_the_reference_rules():
    torch.manual_seed(0)
    logits = torch.randn(5, 6, 7) * 0.05
    synonym_to_class = torch.tensor([0, 0, 1, 2, 2])
    probs, pred, extra = query_probabilities(logits, synonym_to_class, 3, 50.0, area_thd=0.3, prob_thd=0.45)
    q = (logits * 50).softmax(0)
    want = torch.stack([q[:2].amax(0), q[2], q[3:].amax(0)])  # max over a class's queries, not renormalised
    counts = torch.stack([(want.argmax(0) == c).sum() for c in (1, 2)])
    keep = counts.float() > 0.3 * counts.sum()
    want[1:] *= keep[:, None, None]
    assert extra['area_counts'].tolist() == counts.tolist() and extra['area_keep'].tolist() == keep.tolist()
    torch.testing.assert_close(probs, want)
    expected_pred = want.argmax(0)
    expected_pred[want.amax(0) < 0.45] = 0
    assert torch.equal(pred[0], expected_pred)
    renorm, pred2, _ = query_probabilities(logits, synonym_to_class, 3, 50.0, prob_thd=0.45, renormalize=True)
    torch.testing.assert_close(renorm.sum(0), torch.ones(6, 7))
    assert pred2.shape == (1, 6, 7)


# ------------------------------------------------------------------------------------------------ PAMR
def _pamr_reference(x, mask, num_iter, dilations):
    """PAMR as 1-stage-wseg writes it: fixed 3x3 kernels as dilated convolutions per channel."""
    def shifts(t, kernel, d):
        b, k, h, w = t.shape
        out = F.conv2d(F.pad(t.reshape(b * k, 1, h, w), [d] * 4, mode='replicate'), kernel, dilation=d)
        return out.reshape(b, k, -1, h, w)
    eye = torch.eye(9).reshape(9, 1, 3, 3)
    neighbours = eye[[0, 1, 2, 3, 5, 6, 7, 8]]
    diff = eye[4:5] - neighbours
    mask = F.interpolate(mask, size=x.shape[-2:], mode='bilinear', align_corners=True)
    std = torch.cat([shifts(x, eye, d) for d in dilations], 2).std(2, keepdim=True)
    aff = -torch.cat([shifts(x, diff, d).abs() for d in dilations], 2) / (1e-8 + 0.1 * std)
    aff = aff.mean(1, keepdim=True).softmax(2)
    for _ in range(num_iter):
        mask = (torch.cat([shifts(mask, neighbours, d) for d in dilations], 2) * aff).sum(2)
    return mask


def test_pamr_matches_the_reference_formula():
    torch.manual_seed(0)
    image, scores = torch.randn(2, 3, 40, 48), torch.randn(2, 4, 20, 24)
    want = _pamr_reference(image, scores, 3, (2, 4))
    torch.testing.assert_close(pamr(image, scores, 3, (2, 4)), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(PAMR(3, (2, 4))(F.interpolate(scores, size=(40, 48), mode='bilinear',
                                                              align_corners=True), image), want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(want, F.interpolate(scores, size=(40, 48), mode='bilinear', align_corners=True))
    with pytest.raises(ValueError, match='PAMR'):
        PAMR(1, ())


def test_pamr_is_usable_by_ovsegmentor():
    from ovseg.testing import tiny_maskclip_cfg
    model = MODELS.build(tiny_maskclip_cfg(['cat', 'dog'], postprocessors=[dict(type='PAMR', num_iter=2)])).eval()
    out = model.predict(torch.randn(1, 3, 64, 64))[0]
    assert out.seg_logits.data.shape == (2, 64, 64)


# --------------------------------------------------------------------------------------- the segmentor
@pytest.mark.parametrize('method', sorted(STRATEGY))
def test_tiny_segmentor_predicts(method):
    model = MODELS.build(_tiny(method, test_cfg=dict(mode='slide', crop_size=48, stride=32))).eval()
    assert type(model.backbone.strategies[1]).__name__ == STRATEGY[method]
    x = torch.randn(1, 3, 72, 100)
    sample = SegDataSample(metainfo=dict(img_shape=(72, 100), ori_shape=(90, 120)))
    out = model.predict(x, [sample])[0]
    assert out.seg_logits.data.shape == (3, 90, 120) and out.pred_sem_seg.data.shape == (1, 90, 120)
    # the stored probabilities are the class probabilities of the resized, post-processed logits
    logits = F.interpolate(model.inference(x), size=(90, 120), mode='bilinear', align_corners=False)
    logits = model.refine(logits, F.interpolate(x, size=(90, 120), mode='bilinear', align_corners=False))
    emb = model.class_embeddings()
    want, _, _ = query_probabilities(logits[0], emb.synonym_to_class, 3, model.logit_scale, model.area_thd,
                                     model.prob_thd, model.renormalize)
    torch.testing.assert_close(out.seg_logits.data, want)


def test_slide_windows_average_logits_not_probabilities():
    model = MODELS.build(_tiny('sclip', test_cfg=dict(mode='slide', crop_size=48, stride=16))).eval()
    x = torch.randn(1, 3, 48, 80)
    with torch.no_grad():
        stitched = model.inference(x)
        boxes = [(0, 48, 0, 48), (0, 48, 16, 64), (0, 48, 32, 80)]
        want = torch.zeros_like(stitched)
        count = torch.zeros(1, 1, 48, 80)
        for y1, y2, x1, x2 in boxes:
            want[..., y1:y2, x1:x2] += model.window_logits(x[..., y1:y2, x1:x2])
            count[..., y1:y2, x1:x2] += 1
    torch.testing.assert_close(stitched, want / count)


def test_clearclip_pads_windows_symmetrically():
    assert symmetric_pad(360, 448, 16) == (0, 0, 4, 4) and symmetric_pad(50, 45, 16) == (1, 2, 7, 7)
    model = MODELS.build(_tiny('clearclip')).eval()
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        logits = model.window_logits(x)
        padded = F.pad(x, (6, 6, 4, 4))
        full = F.interpolate(model.lowres_logits(padded), size=(48, 64), mode='bilinear', align_corners=False)
    torch.testing.assert_close(logits, full[..., 4:44, 6:58])


def test_training_is_refused():
    model = MODELS.build(_tiny('naclip'))
    with pytest.raises(RuntimeError, match='training-free'):
        model.loss(torch.zeros(1, 3, 32, 32), [])


# ------------------------------------------------------------------------------------------- the configs
def _bases(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == '_base_':
            return ast.literal_eval(node.value)
    return []


@pytest.mark.parametrize('method', sorted(PROTOCOL))
@pytest.mark.parametrize('name', BENCHMARKS)
def test_config_protocol(method, name):
    path = REPO / f'configs/{method}/{method}_vit-b16_{name}.py'
    cfg = Config.fromfile(str(path))
    assert all(base.startswith('../_base_/') for base in _bases(path))
    short, crop, stride, scale, prob_thd, area_thd = PROTOCOL[method][name]
    m = cfg.model
    assert m.type == 'OVQuerySegmentor' and m.backbone.pretrained == 'openai' and m.backbone.model_name == 'ViT-B-16'
    assert [a['type'] for a in m.backbone.attention] == [STRATEGY[method]] and m.backbone.pos_mode == 'bicubic_scale'
    assert (m.logit_scale, m.prob_thd, m.get('area_thd')) == (scale, prob_thd, area_thd)
    assert m.text_classifier.templates == 'imagenet80'
    assert m.data_preprocessor.mean == [122.771, 116.746, 104.094] and m.data_preprocessor.std == [68.501, 66.632,
                                                                                                    70.323]
    mode = m.test_cfg['mode']
    assert (mode == 'whole') == (crop is None)
    if crop is not None:
        assert (m.test_cfg['crop_size'], m.test_cfg['stride']) == (crop, stride)
    for loader in (cfg.test_dataloader, cfg.val_dataloader):
        resize = [t for t in loader.dataset.pipeline if t['type'] == 'Resize']
        assert [tuple(t['scale']) for t in resize] == [(2048, short)] and resize[0]['keep_ratio']
    vocab = load_vocabulary(m.vocabulary)
    assert m.vocabulary == ('clearclip_voc21' if (method, name) == ('clearclip', 'voc21') else f'sclip_{name}')
    dataset = cfg.test_dataloader.dataset
    classes = dataset.get('metainfo', {}).get('classes') or DATASETS.get(dataset.type).METAINFO['classes']
    assert len(vocab) == len(classes)
    assert [p['type'] for p in m.get('postprocessors', [])] == (['PAMR'] if method == 'naclip' else [])
    assert m.get('renormalize', False) == (method == 'naclip')
    assert m.crop_pad == ('symmetric' if method == 'clearclip' else 'none')


def test_verbatim_vocabularies_keep_the_originals_quirks():
    pc60, coco = load_vocabulary('sclip_pc60'), load_vocabulary('sclip_coco_object81')
    assert pc60.classes[-1] == ('wood ',)  # trailing space of SCLIP's cls_context60.txt
    assert 'bed' in coco.classes[0] and coco.classes[60] == ('bed',)  # background line and class 'bed'
    voc = load_vocabulary('sclip_voc21')
    assert voc.classes[15][:2] == ('person', 'person in shirt') and len(voc.classes[0]) == 26
    assert load_vocabulary('clearclip_voc21').classes[0] == ('background',)
    np.testing.assert_array_equal([len(c) for c in load_vocabulary('sclip_voc20').classes], [1] * 14 + [7] + [1] * 4 + [5])
