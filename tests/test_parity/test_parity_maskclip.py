"""MaskCLIP parity with the original CLIP-DINOiser code (fixtures in $OVSEG_PARITY_DIR/maskclip_dinoiser).

Every case listed in the folder's manifest is checked.

Tolerances (``ovseg.testing.tolerance``), from the manifest's ViT (``L`` blocks of width ``W``):
text embeddings are the text tower's blocks plus the projection and the template mean; the dense features
the vision blocks plus MaskCLIP's value path and the projection (``depth=L+2, width=4W``), relative to their
largest value; the scaled cosines 100 x <f, t> are a linear map of them (one more stage); a softmax moves
each probability by at most half of its logits' largest change (``scale = max|logits| / 2``). The
prediction (bilinear x16, argmax) is compared exactly wherever our top-two gap exceeds twice the
probabilities' tolerance (each of the two scores may be off by it). ``test_parity_maskclip_tolerance_catches_defects``
shows a logit scale of 90 instead of 100 and an input one pixel off failing.
"""
import json

import numpy as np
import pytest
import torch

from ovseg.registry import MODELS
from ovseg.testing import (assert_close, assert_equal_away_from_ties, det_state_dict_for, parity_dir,
                           softmax_error_model, tolerance_for, top2_margin, tower_error_model)

FOLDER = 'maskclip_dinoiser'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _cases():
    return sorted(_manifest()['cases']) if ROOT is not None else []


def error_models(man):
    """Float32 error models of the fixture's CLIP (module docstring)."""
    cfg = man['model']['open_clip_config']
    vision = cfg['vision_cfg']
    return dict(text=tower_error_model(cfg['text_cfg'], extra=2), dense=tower_error_model(vision, extra=2),
                inter=dict(tower_error_model(vision), depth=3), logits=tower_error_model(vision, extra=3))


@pytest.fixture(scope='module')
def segmentor():
    man = _manifest()
    cfg = dict(type='OVSegmentor',
               backbone=dict(type='OpenCLIPBackbone', arch=man['model']['open_clip_config'],
                             token_layers=('resblocks.-3.ln_2',)),
               text_classifier=dict(type='OVTextClassifier', templates=man['text']['templates'],
                                    cache_dir=None),
               head=dict(type='OVSimilarityHead', logit_scale=100.0), vocabulary=['x', 'y'])
    model = MODELS.build(cfg)
    clip = model.backbone.clip
    clip.load_state_dict(det_state_dict_for(clip, man['seed'], root=ROOT.parent), strict=False)
    return model.eval()


def _load(case):
    info = _manifest()['cases'][case]
    return info, np.load(ROOT / info['file'])


@pytest.mark.parametrize('case', _cases())
def test_parity_maskclip_dinoiser_maskclip_text(segmentor, case):
    info, fx = _load(case)
    tc = segmentor.text_classifier
    tokens = tc.tokenize(segmentor.backbone, [t.format(c) for c in info['vocab'] for t in tc.templates])
    np.testing.assert_array_equal(tokens.numpy().reshape(fx['text_tokens'].shape), fx['text_tokens'])
    emb = tc(segmentor.backbone, [[name] for name in info['vocab']]).embeddings
    assert_close(emb, fx['text_emb'], **error_models(_manifest())['text'], name='text_emb')


def _dense_and_logits(segmentor, info, fx):
    segmentor.set_vocabulary([[name] for name in info['vocab']])
    with torch.no_grad():
        feats = segmentor.backbone(torch.from_numpy(fx['pixel_values']))
        logits = segmentor.head(feats.dense, segmentor.class_embeddings())
    return feats, logits


@pytest.mark.parametrize('case', _cases())
def test_parity_maskclip_dinoiser_maskclip_dense_and_probs(segmentor, case):
    info, fx = _load(case)
    models = error_models(_manifest())
    feats, logits = _dense_and_logits(segmentor, info, fx)
    assert_close(feats.dense, fx['maskclip_feats'], **models['dense'], name='maskclip_feats')
    assert_close(logits, fx['maskclip_scaled_cos'], **models['logits'], name='maskclip_scaled_cos')
    assert_close(logits.softmax(1), fx['maskclip_probs'], **softmax_error_model(models['logits'], fx['maskclip_scaled_cos']),
                 name='maskclip_probs')
    tap = feats.tokens['resblocks.-3.ln_2'][0].flatten(1).T.numpy()
    cls = feats.cls_tokens['resblocks.-3.ln_2'][0].numpy()
    tokens = np.concatenate([cls[None], tap])[fx['tok_idx']]
    assert_close(tokens, fx['clip_inter_sub'], **models['inter'], name='clip_inter')


@pytest.mark.parametrize('case', _cases())
def test_parity_maskclip_dinoiser_maskclip_prediction(segmentor, case):
    info, fx = _load(case)
    segmentor.set_vocabulary([[name] for name in info['vocab']])
    result = segmentor.predict(torch.from_numpy(fx['pixel_values']))[0]
    scores = result.seg_logits.data.numpy()
    tol = tolerance_for(fx['maskclip_probs'], **softmax_error_model(error_models(_manifest())['logits'],
                                                                fx['maskclip_scaled_cos']))
    assert_equal_away_from_ties(result.pred_sem_seg.data[0], fx['pred_full_maskclip'], top2_margin(scores, 0),
                                2 * tol, name='pred_full_maskclip')


@pytest.mark.parametrize('case', _cases())
def test_parity_maskclip_dinoiser_maskclip_tolerance_catches_defects(segmentor, case):
    """A logit scale of 90 and an input one pixel off are far outside the tolerances."""
    info, fx = _load(case)
    models = error_models(_manifest())
    feats, logits = _dense_and_logits(segmentor, info, fx)
    probs_tol = tolerance_for(fx['maskclip_probs'], **softmax_error_model(models['logits'], fx['maskclip_scaled_cos']))
    assert np.abs((0.9 * logits).softmax(1).numpy() - fx['maskclip_probs']).max() > 10 * probs_tol
    with torch.no_grad():  # an image one pixel off (as from an off-by-one resize or crop)
        wrong = segmentor.backbone(torch.roll(torch.from_numpy(fx['pixel_values']), 1, dims=-1)).dense
    assert np.abs(wrong.numpy() - fx['maskclip_feats']).max() > 10 * tolerance_for(fx['maskclip_feats'],
                                                                                  **models['dense'])
