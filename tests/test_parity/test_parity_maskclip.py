"""MaskCLIP parity with the original CLIP-DINOiser code (fixtures in $OVSEG_PARITY_DIR/maskclip_dinoiser).

Every case listed in the folder's manifest is checked with the tolerances its README gives.
"""
import json

import numpy as np
import pytest
import torch

from ovseg.registry import MODELS
from ovseg.testing import det_state_dict_for, parity_dir

FOLDER = 'maskclip_dinoiser'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _cases():
    return sorted(_manifest()['cases']) if ROOT is not None else []


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
def test_parity_maskclip_text(segmentor, case):
    info, fx = _load(case)
    tc = segmentor.text_classifier
    tokens = tc.tokenize(segmentor.backbone, [t.format(c) for c in info['vocab'] for t in tc.templates])
    np.testing.assert_array_equal(tokens.numpy().reshape(fx['text_tokens'].shape), fx['text_tokens'])
    emb = tc(segmentor.backbone, [[name] for name in info['vocab']]).embeddings
    np.testing.assert_allclose(emb.numpy(), fx['text_emb'], atol=1e-6, rtol=0)


@pytest.mark.parametrize('case', _cases())
def test_parity_maskclip_dense_and_probs(segmentor, case):
    info, fx = _load(case)
    segmentor.set_vocabulary([[name] for name in info['vocab']])
    x = torch.from_numpy(fx['pixel_values'])
    with torch.no_grad():
        feats = segmentor.backbone(x)
        logits = segmentor.head(feats.dense, segmentor.class_embeddings())
    np.testing.assert_allclose(feats.dense.numpy(), fx['maskclip_feats'], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits.numpy(), fx['maskclip_scaled_cos'], atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits.softmax(1).numpy(), fx['maskclip_probs'], atol=1e-5, rtol=0)
    tap = feats.tokens['resblocks.-3.ln_2'][0].flatten(1).T.numpy()
    cls = feats.cls_tokens['resblocks.-3.ln_2'][0].numpy()
    tokens = np.concatenate([cls[None], tap])[fx['tok_idx']]
    np.testing.assert_allclose(tokens, fx['clip_inter_sub'], atol=1e-4, rtol=0)


@pytest.mark.parametrize('case', _cases())
def test_parity_maskclip_prediction(segmentor, case):
    info, fx = _load(case)
    segmentor.set_vocabulary([[name] for name in info['vocab']])
    x = torch.from_numpy(fx['pixel_values'])
    result = segmentor.predict(x)[0]
    pred = result.pred_sem_seg.data[0].numpy()
    wrong = (pred != fx['pred_full_maskclip']) & (fx['pred_full_maskclip_fragile'] == 0)
    assert wrong.sum() == 0, f'{wrong.sum()} non-fragile pixels differ'
