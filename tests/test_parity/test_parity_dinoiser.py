"""CLIP-DINOiser parity with the original code (fixtures in $OVSEG_PARITY_DIR/maskclip_dinoiser)."""
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
    head_cfg = man.get('clip_dinoiser', {})
    cfg = dict(type='OVSegmentor',
               backbone=dict(type='OpenCLIPBackbone', arch=man['model']['open_clip_config']),
               text_classifier=dict(type='OVTextClassifier', templates=man['text']['templates'],
                                    cache_dir=None),
               refiner=dict(type='CLIPDINOiserRefiner', in_channels=768, proj_channels=256,
                            gamma=head_cfg.get('gamma', 0.2)),
               background=dict(thresh=head_cfg.get('delta', 0.99), objectness_thresh=0.5, optional=True),
               vocabulary=['x'])
    model = MODELS.build(cfg)
    clip = model.backbone.clip
    clip.load_state_dict(det_state_dict_for(clip, man['seed'], root=ROOT.parent), strict=False)
    model.refiner.load_state_dict(det_state_dict_for(model.refiner, man['seed'], root=ROOT.parent))
    return model.eval()


def _run(segmentor, case):
    info = _manifest()['cases'][case]
    fx = np.load(ROOT / info['file'])
    segmentor.set_vocabulary([[name] for name in info['vocab']])
    assert (segmentor.background_index is not None) == info['apply_found']
    x = torch.from_numpy(fx['pixel_values'])
    with torch.no_grad():
        feats = segmentor.backbone(x)
        tokens = feats.tokens[segmentor.refiner.token_layer]
        refined = segmentor.refiner(feats)
        corr = segmentor.refiner.correlations(tokens)
        obj = segmentor.refiner.obj_proj(tokens)
        bkg_logit = segmentor.refiner.objectness_logits(tokens)
        logits = segmentor.head(refined.dense, segmentor.class_embeddings())
        final = segmentor.scores_from_features(refined)
    return info, fx, dict(feats=feats, refined=refined, corr=corr, obj=obj, bkg_logit=bkg_logit,
                          logits=logits, final=final)


@pytest.mark.parametrize('case', _cases())
def test_parity_dinoiser_arrays(segmentor, case):
    info, fx, out = _run(segmentor, case)
    h, w = info['h'], info['w']
    q_idx, p_idx = fx['corr_q_idx'], fx['patch_idx']
    np.testing.assert_allclose(out['obj'][0].flatten(1)[:, p_idx].numpy(), fx['obj_proj_feats_sub'],
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(out['bkg_logit'].numpy(), fx['bkg_logit'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out['refined'].objectness.numpy(), fx['bkg_prob'], atol=1e-6, rtol=0)
    corr_rows = out['corr'][0, q_idx].view(-1, h, w).numpy()
    np.testing.assert_allclose(corr_rows, fx['corrs_rows'], atol=1e-5, rtol=0)
    gamma_rows = np.where(corr_rows < segmentor.refiner.gamma, 0, corr_rows)
    np.testing.assert_allclose(gamma_rows, fx['corrs_gamma_rows'], atol=1e-5, rtol=0)
    pooled = out['refined'].dense[0].flatten(1)[:, p_idx].numpy()
    np.testing.assert_allclose(pooled, fx['pooled_feats_sub'], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out['logits'].numpy(), fx['refined_scaled_cos'], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out['logits'].softmax(1).numpy(), fx['refined_probs'], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out['final'].numpy(), fx['final_output'], atol=1e-5, rtol=0)


@pytest.mark.parametrize('case', _cases())
def test_parity_dinoiser_prediction(segmentor, case):
    info, fx, _ = _run(segmentor, case)
    pred = segmentor.predict(torch.from_numpy(fx['pixel_values']))[0].pred_sem_seg.data[0].numpy()
    wrong = (pred != fx['pred_full']) & (fx['pred_full_fragile'] == 0)
    assert wrong.sum() == 0, f'{wrong.sum()} non-fragile pixels differ'
