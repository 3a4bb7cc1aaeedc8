"""MuSc parity with xrli-U/MuSc (LNAMD, MSM, maps, RsCIN) on the fixtures in $OVSEG_PARITY_DIR/musc.

Every case of the manifest is checked. Below the minimum number of images the reference returns NaN;
ovseg raises a clear error.

Tolerances (``ovseg.testing.tolerance``): LNAMD is a LayerNorm over the whole (C, G, G) block and a
mean over r x r cells (``depth=2, width=C*G*G``, relative to the largest feature). MSM distances are
between L2-normalised features, so their error is absolute on the vectors' scale (2, the largest
distance) after two more stages (normalisation, distance over C): ``depth=4``; the k-smallest mean, the
layer/radius means, the bilinear upsampling and the max keep that error (they are continuous in their
inputs, so near ties in the selections move the result by less than it). RsCIN min-max normalises the
image scores, which divides their error by the score span (twice: the score and the minimum), then two reductions over the class-token
width. With these data: 1.3e-4 on MSM values up to 1.4.
"""
import json

import numpy as np
import pytest
import torch

from ovseg.models.anomaly import (lnamd_layers, min_images, musc_scores, mutual_scores, rscin,
                                  scored_features)
from ovseg.testing import EPS64, assert_close, parity_dir

FOLDER = 'musc'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _cases():
    return sorted(_manifest()['cases']) if ROOT is not None else []


def _lnamd_tol(tokens):
    _, _, length, channels = tokens.shape
    return dict(depth=2, width=channels * (length - 1))


def _msm_tol(tokens):
    return dict(_lnamd_tol(tokens), depth=4, scale=2.0)


def _rscin_tol(tokens, ac_score, cls):
    span = float(np.nanmax(ac_score) - np.nanmin(ac_score))
    return dict(depth=6, width=max(_lnamd_tol(tokens)['width'], cls.shape[-1]),
                scale=2.0 * np.nanmax(np.abs(ac_score)) / span)


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
        assert_close(feats, fx[f'lnamd_r{r}_sub'], **_lnamd_tol(fx['tokens']), name=f'lnamd_r{r}')


def test_parity_musc_mutual_scores_and_maps(case):
    fx, out = case['fx'], case['out']
    tol = _msm_tol(fx['tokens'])
    for r in case['hp']['r_list']:
        assert_close(out['msm'][r], fx[f'msm_r{r}'], **tol, name=f'msm_r{r}')
        assert_close(out['msm'][r].mean(0), fx[f'map_r{r}'], **tol, name=f'map_r{r}')
    assert_close(out['map_patch'], fx['map_patch'], **tol, name='map_patch')
    assert_close(out['anomaly_maps'], fx['anomaly_maps'][:, 0], **tol, name='anomaly_maps')
    assert_close(out['ac_score'], fx['ac_score'], **tol, name='ac_score')


def test_parity_musc_rscin(case):
    fx, out, cls = case['fx'], case['out'], case['cls']
    tol = _rscin_tol(fx['tokens'], fx['ac_score'], fx['cls_tokens'])
    assert_close(out['image_scores'], fx['image_score_rscin_k123'], **tol, name='rscin_k123')
    ac = torch.from_numpy(fx['ac_score'])
    span = fx['ac_score'].max() - fx['ac_score'].min()
    # The reference's own normalisation of its own float64 scores: float64 roundings only.
    assert_close((fx['ac_score'] - fx['ac_score'].min()) / span, fx['rscin_norm_scores'], depth=3, eps=EPS64,
                 name='rscin_norm_scores')
    lists = {'k189': tuple(case['hp']['rscin_k_visa']), 'k1': (1,), 'k5': (5,), 'k0': (0,),
             'mobile_k23': (2, 3, 1)}  # the mobile variant appends 1 to [2, 3]
    for key, k_list in lists.items():
        if f'image_score_rscin_{key}' in fx.files:
            # These start from the reference's own ac_score: only RsCIN's float32 steps.
            assert_close(rscin(ac, cls, k_list), fx[f'image_score_rscin_{key}'], depth=4, width=cls.shape[-1],
                         scale=2.0 * float(np.abs(fx['ac_score']).max()) / span, name=key)


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
    tol = _msm_tol(fx['tokens'])
    for r in kw['r_list']:
        assert_close(out['msm'][r], fx[f'{prefix}msm_r{r}'], **tol, name=f'{prefix}msm_r{r}')
    assert_close(out['anomaly_maps'], fx[f'{prefix}anomaly_maps'][:, 0], **tol, name=f'{prefix}anomaly_maps')
    assert_close(out['ac_score'], fx[f'{prefix}ac_score'], **tol, name=f'{prefix}ac_score')
    assert_close(out['image_scores'], fx[f'{prefix}image_score_rscin_k123'],
                 **_rscin_tol(fx['tokens'], fx[f'{prefix}ac_score'], fx['cls_tokens']), name=f'{prefix}rscin')


def test_parity_musc_chunked_distances(case):
    """Tiny chunks (3 images per LNAMD chunk, one reference image per distance block) change nothing."""
    layer = scored_features(case['tokens'], 3, 0, image_chunk=3)
    length = layer.shape[1]
    assert_close(mutual_scores(layer, chunk_elements=length * length), case['fx']['msm_r3'][0],
                 **_msm_tol(case['fx']['tokens']), name='chunked msm_r3')


def test_parity_musc_tolerance_catches_defects(case):
    """Keeping the 40 % nearest images instead of 30 % (k off by one or more) fails the MSM check."""
    kw = dict(case['kw'], topmin_max=0.4)
    if int((len(case['cls']) - 1) * 0.4) == int((len(case['cls']) - 1) * 0.3):
        pytest.skip('this N gives the same k for 30 % and 40 %')
    wrong = musc_scores(case['tokens'], case['cls'], case['info']['image_size'], **kw)
    with pytest.raises(AssertionError):
        assert_close(wrong['msm'][1], case['fx']['msm_r1'], **_msm_tol(case['fx']['tokens']))
