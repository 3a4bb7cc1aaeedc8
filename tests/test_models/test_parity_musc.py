"""MuSc parity with xrli-U/MuSc (LNAMD, MSM, maps, RsCIN) on the fixtures in $OVSEG_PARITY_DIR/musc.

Every case of the manifest is checked with the README's tolerances (1e-5 LNAMD, 1e-6 MSM / maps /
RsCIN). Below the minimum number of images the reference returns NaN; ovseg raises a clear error.
"""
import json

import numpy as np
import pytest
import torch

from ovseg.models.anomaly import (lnamd_layers, min_images, musc_scores, mutual_scores, rscin,
                                  scored_features)
from ovseg.testing import parity_dir

FOLDER = 'musc'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _cases():
    return sorted(_manifest()['cases']) if ROOT is not None else []


@pytest.fixture(scope='module', params=_cases())
def case(request):
    man = _manifest()
    info = man['cases'][request.param]
    fx = np.load(ROOT / f"{info.get('name', request.param)}.npz")
    hp = man['hyper_parameters']
    tokens = [torch.from_numpy(t) for t in fx['tokens']]
    cls = torch.from_numpy(fx['cls_tokens'])
    kw = dict(r_list=tuple(hp['r_list']), topmin_min=hp['msm_topmin_min'], topmin_max=hp['msm_topmin_max'],
              k_list=tuple(hp['rscin_k_pipeline_mvtec']))
    out = musc_scores(tokens, cls, info['image_size'], **kw)
    return dict(info=info, hp=hp, fx=fx, tokens=tokens, cls=cls, kw=kw, out=out)


def test_parity_musc_lnamd(case):
    fx, sub = case['fx'], case['fx']['lnamd_sub_idx']
    for r in case['hp']['r_list']:
        feats = lnamd_layers([t[sub] for t in case['tokens']], r)
        np.testing.assert_allclose(feats.numpy(), fx[f'lnamd_r{r}_sub'], atol=1e-5, rtol=0)


def test_parity_musc_mutual_scores_and_maps(case):
    fx, out = case['fx'], case['out']
    for r in case['hp']['r_list']:
        np.testing.assert_allclose(out['msm'][r].numpy(), fx[f'msm_r{r}'], atol=1e-6, rtol=0)
        np.testing.assert_allclose(out['msm'][r].mean(0).numpy(), fx[f'map_r{r}'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out['map_patch'].numpy(), fx['map_patch'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out['anomaly_maps'].numpy(), fx['anomaly_maps'][:, 0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out['ac_score'].numpy(), fx['ac_score'], atol=1e-6, rtol=0)


def test_parity_musc_rscin(case):
    fx, out, cls = case['fx'], case['out'], case['cls']
    np.testing.assert_allclose(out['image_scores'].numpy(), fx['image_score_rscin_k123'], atol=1e-6, rtol=0)
    ac = torch.from_numpy(fx['ac_score'])
    span = fx['ac_score'].max() - fx['ac_score'].min()
    np.testing.assert_allclose((fx['ac_score'] - fx['ac_score'].min()) / span, fx['rscin_norm_scores'],
                               atol=1e-12)
    lists = {'k189': tuple(case['hp']['rscin_k_visa']), 'k1': (1,), 'k5': (5,), 'k0': (0,),
             'mobile_k23': (2, 3, 1)}  # the mobile variant appends 1 to [2, 3]
    for key, k_list in lists.items():
        if f'image_score_rscin_{key}' in fx.files:
            np.testing.assert_allclose(rscin(ac, cls, k_list).numpy(), fx[f'image_score_rscin_{key}'],
                                       atol=1e-6, rtol=0, err_msg=key)


def test_parity_musc_small_n(case):
    """The smallest working N matches the reference; below it ovseg raises instead of returning NaN."""
    fx, kw, n_min = case['fx'], case['kw'], min_images(case['kw']['topmin_min'], case['kw']['topmin_max'])
    assert n_min == case['hp']['minimum_images']
    for n, info in case['info']['small_N'].items():
        n = int(n)
        if info.get('msm_nan_fraction', 0) > 0:  # the reference gives NaN or raises
            assert n < n_min
            with pytest.raises(ValueError, match='at least'):
                musc_scores([t[:n] for t in case['tokens']], case['cls'][:n], case['info']['image_size'],
                            **kw)
    prefix = f'small{n_min}_'
    out = musc_scores([t[:n_min] for t in case['tokens']], case['cls'][:n_min], case['info']['image_size'],
                      **kw)
    for r in kw['r_list']:
        np.testing.assert_allclose(out['msm'][r].numpy(), fx[f'{prefix}msm_r{r}'], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out['anomaly_maps'].numpy(), fx[f'{prefix}anomaly_maps'][:, 0], atol=1e-6)
    np.testing.assert_allclose(out['ac_score'].numpy(), fx[f'{prefix}ac_score'], atol=1e-6)
    np.testing.assert_allclose(out['image_scores'].numpy(), fx[f'{prefix}image_score_rscin_k123'], atol=1e-6)


def test_parity_musc_chunked_distances(case):
    """Tiny chunks (3 images per LNAMD chunk, one reference image per distance block) change nothing."""
    layer = scored_features(case['tokens'], 3, 0, image_chunk=3)
    length = layer.shape[1]
    np.testing.assert_allclose(mutual_scores(layer, chunk_elements=length * length).numpy(),
                               case['fx']['msm_r3'][0], atol=1e-6, rtol=0)
