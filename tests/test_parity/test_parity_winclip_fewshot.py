"""WinCLIP+ parity with anomalib 2.7.0's few-shot WinClipModel (fixtures in $OVSEG_PARITY_DIR/winclip_fewshot).

For every case of the manifest and every k of the case, the memory of the first k reference images and
the scores of the two queries (normal crop, crop with a painted defect) are compared with anomalib's:
reference banks, text embeddings, zero-shot branch, patch and window association scores, their
nearest-reference indices (away from near ties), per-scale and few-shot maps, combined map, image score
and the upsampled anomaly map (the first case by default, every case with ``-m slow`` too). The memory is
built once from the case's K = max(k) references; the memory of k references is its first k images
(banks are reference-major, as anomalib's ``reshape``).

Tolerances (``ovseg.testing.tolerance``): embeddings come out of ``vision layers`` transformer blocks whose
longest reduction is the MLP (4 x width), plus the patch embedding and ``ln_post``/``proj`` stages
(depth = layers + 2), relative to the largest expected value; cosines of unit vectors inherit that
relative error at scale 1, so association scores, maps and image scores use the same depth and width
at scale 1. Text embeddings: text layers + 2 stages, MLP width 4 x text width. Tokens and window index
sets are exact; nearest-reference indices are exact wherever the expected runner-up is farther than the
distance tolerance (with random weights the bank is dense: many queries have a runner-up
that close, up to half of them for windows of smooth images; the scores themselves are compared
everywhere, the indices are a diagnostic).
"""
import json

import numpy as np
import pytest
import torch

from ovseg.models.anomaly import nearest_reference
from ovseg.models.decode_heads import WinCLIPFewShotHead
from ovseg.registry import MODELS
from ovseg.testing import assert_close, assert_equal_away_from_ties, det_state_dict_for, parity_dir, tolerance_for

FOLDER = 'winclip_fewshot'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text()) if ROOT is not None else {}


def _case_names():
    return sorted(_manifest().get('cases', {}))


def _case_params():
    """Every case; the first runs by default, the others (5-10 s each on two CPU cores) are marked slow."""
    return [pytest.param(n, marks=[pytest.mark.slow] if i else [], id=n) for i, n in enumerate(_case_names())]


@pytest.fixture(scope='module')
def model():
    man = _manifest()
    backbone = MODELS.build(dict(type='OpenCLIPBackbone', arch=man['model']['open_clip_config']))
    state = det_state_dict_for(backbone.clip, man['seed'], root=ROOT.parent)
    assert {k: list(v.shape) for k, v in state.items()} == {
        k: list(v) for k, v in man['weights']['param_shapes'].items()}
    backbone.clip.load_state_dict(state, strict=False)
    head = WinCLIPFewShotHead(scales=man['method']['scales'], temperature=man['method']['temperature'])
    cfg = man['model']['open_clip_config']
    vision = dict(depth=cfg['vision_cfg']['layers'] + 2, width=4 * cfg['vision_cfg']['width'])
    text = dict(depth=cfg['text_cfg']['layers'] + 2, width=4 * cfg['text_cfg']['width'])
    return dict(man=man, backbone=backbone.eval(), head=head, vision=vision, text=text)


@pytest.fixture(scope='module', params=_case_params())
def case(request, model):
    """Encoded queries, the K-reference memory, the text embeddings and the fixture arrays of one case."""
    meta = model['man']['cases'][request.param]
    fx = np.load(ROOT / meta['file'])
    head, backbone = model['head'], model['backbone']
    refs = torch.from_numpy(fx['ref_pixel_values'][:max(meta['k_values'])])
    return dict(meta=meta, fx=fx, memory=head.build_memory(backbone, refs),
                encoded=head.encode_images(backbone, torch.from_numpy(fx['query_pixel_values'])),
                text=head.prompts(backbone, meta['class_name']))


def _first_k(memory, k):
    per_ref = {name: len(bank) // memory['num_references'] for name, bank in
               [('patch', memory['patch'])] + list(memory['windows'].items())}
    return dict(memory, patch=memory['patch'][:k * per_ref['patch']], num_references=k,
                windows={s: w[:k * per_ref[s]] for s, w in memory['windows'].items()})


def test_parity_winclip_fewshot_prompts_text_and_masks(model, case):
    fx, meta, head, backbone = case['fx'], case['meta'], model['head'], model['backbone']
    normal, anomalous = head.prompts.prompts(meta['class_name'])
    assert [normal, anomalous] == [meta['prompts']['normal'], meta['prompts']['anomalous']]
    np.testing.assert_array_equal(head.prompts.tokenize(backbone, normal).numpy(), fx['normal_tokens'])
    np.testing.assert_array_equal(head.prompts.tokenize(backbone, anomalous).numpy(), fx['anomalous_tokens'])
    assert_close(case['text'], fx['text_embeddings'], **model['text'], name='text embeddings')
    for k in head.scales:
        np.testing.assert_array_equal(case['encoded']['masks'][k].numpy(), fx[f'window_masks_scale{k}'])


def test_parity_winclip_fewshot_memory_and_query_embeddings(model, case):
    """Reference banks (patch tokens after ln_post, window embeddings) and the query embeddings."""
    fx, memory, enc, vision = case['fx'], case['memory'], case['encoded'], model['vision']
    grid = tuple(enc['grid'])
    patches = memory['patch'].reshape(memory['num_references'], grid[0] * grid[1], -1)
    for k in case['meta']['k_values']:
        assert_close(patches[:k, fx['patch_index']], fx[f'k{k}__ref_patch_embeddings_sub'], **vision,
                     name=f'k={k} reference patch tokens')
        for s in model['head'].scales:
            windows = memory['windows'][s].reshape(memory['num_references'], -1, memory['windows'][s].shape[-1])
            assert_close(windows[:k, fx[f'window_index_scale{s}']],
                         fx[f'k{k}__ref_window_embeddings_scale{s}_sub'], **vision,
                         name=f'k={k} reference windows, scale {s}')
    assert_close(enc['image_embeddings'], fx['query_image_embeddings'], **vision, name='query image embeddings')
    assert_close(enc['patch_embeddings'][:, fx['patch_index']], fx['query_patch_embeddings_sub'], **vision,
                 name='query patch tokens')
    for s in model['head'].scales:
        assert_close(enc['window_embeddings'][s][:, fx[f'window_index_scale{s}']],
                     fx[f'query_window_embeddings_scale{s}_sub'], **vision, name=f'query windows, scale {s}')


def test_parity_winclip_fewshot_scores_and_maps(model, case):
    fx, head = case['fx'], model['head']
    scores = dict(model['vision'], scale=1.0)  # cosines of unit vectors carry the embeddings' relative error
    zs = head.score(case['encoded'], case['text'])
    assert_close(zs['image_scores'], fx['zs_image_scores'], **scores, name='zero-shot image scores')
    assert_close(zs['scale_maps'], fx['zs_scale_maps'], **scores, name='zero-shot scale maps')
    assert_close(zs['patch_map'], fx['zs_multiscale_map'], **scores, name='zero-shot multi-scale map')
    for k in case['meta']['k_values']:
        out = head.score(case['encoded'], case['text'], _first_k(case['memory'], k))
        assert_close(out['fs_patch_scores'], fx[f'k{k}__fs_patch_scores'], **scores, name=f'k={k} patch scores')
        for s in head.scales:
            assert_close(out['fs_window_scores'][s], fx[f'k{k}__fs_window_scores_scale{s}'], **scores,
                         name=f'k={k} window scores, scale {s}')
        for key, index in [('patch', 'patch')] + [(s, f'window_scale{s}') for s in head.scales]:
            tol = 2 * tolerance_for(fx[f'k{k}__fs_patch_scores'], **scores)  # distances are twice the scores
            assert_equal_away_from_ties(out['fs_nn_index'][key], fx[f'k{k}__fs_{index}_nn_index'],
                                        fx[f'k{k}__fs_{index}_nn_gap'], tol, max_near_fraction=0.5,
                                        name=f'k={k} nearest {index}')
        assert_close(out['fs_scale_maps'], fx[f'k{k}__fs_scale_maps'], **scores, name=f'k={k} few-shot scale maps')
        assert_close(out['fs_map'], fx[f'k{k}__fs_map'], **scores, name=f'k={k} few-shot map')
        assert_close(out['fs_image_scores'], fx[f'k{k}__fs_image_scores'], **scores, name=f'k={k} few-shot score')
        assert_close(out['patch_map'], fx[f'k{k}__combined_map'], **scores, name=f'k={k} combined map')
        assert_close(out['image_scores'], fx[f'k{k}__image_scores'], **scores, name=f'k={k} image scores')
        assert_close(out['anomaly_map'], fx[f'k{k}__anomaly_map'], **scores, name=f'k={k} anomaly map')


def test_parity_winclip_fewshot_full_bank_association(model):
    """Where a case stores the full k = 1 banks, the association alone reproduces the patch scores."""
    found = False
    for name in _case_names():
        fx = np.load(ROOT / model['man']['cases'][name]['file'])
        if 'k1__ref_patch_embeddings' not in fx.files or 'query_patch_embeddings' not in fx.files:
            continue
        found = True
        bank = torch.from_numpy(fx['k1__ref_patch_embeddings'])
        # many chunks of the bank: the chunked search gives the whole-bank minimum
        dist, _ = nearest_reference(torch.from_numpy(fx['query_patch_embeddings']),
                                    bank.reshape(-1, bank.shape[-1]), chunk_elements=1000)
        assert_close(dist / 2, fx['k1__fs_patch_scores'], depth=1, width=bank.shape[-1], scale=1.0,
                     name=f'{name} association from the stored banks')
    if not found:
        pytest.skip('no case stores the full k = 1 banks')


def test_parity_winclip_fewshot_tolerance_catches_defects(model, case):
    """A harmonic instead of an arithmetic mean of the few-shot scale maps, and association scores not
    halved, fail the tolerances of the first k."""
    fx, head = case['fx'], model['head']
    k = case['meta']['k_values'][0]
    scores = dict(model['vision'], scale=1.0)
    out = head.score(case['encoded'], case['text'], _first_k(case['memory'], k))
    maps = out['fs_scale_maps']
    with pytest.raises(AssertionError, match='differ by more than'):
        assert_close(maps.shape[1] / (1.0 / maps).sum(dim=1), fx[f'k{k}__fs_map'], **scores)
    with pytest.raises(AssertionError, match='differ by more than'):
        assert_close(2 * out['fs_patch_scores'], fx[f'k{k}__fs_patch_scores'], **scores)
