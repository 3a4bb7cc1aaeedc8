"""WinCLIP parity with anomalib 2.7.0's zero-shot WinClipModel (fixtures in $OVSEG_PARITY_DIR/anomaly).

Every ``winclip_*.json`` / ``.npz`` pair in the folder is a case; a case whose npz lacks
``input_batch`` uses the input of the case with the same ``input_batch_sha256``. Cases with more than
four vision layers (the full ViT-B-16-plus-240, ~1 min on a CPU) are marked slow. Tolerances are the
README's: embeddings atol = rtol = 1e-4, scores and maps atol 1e-5.
"""
import hashlib
import json

import numpy as np
import pytest
import torch

from ovseg.models.anomaly import WinCLIPHead
from ovseg.registry import MODELS
from ovseg.testing import det_state_dict_for, parity_dir

FOLDER = 'anomaly'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
EMB = dict(atol=1e-4, rtol=1e-4)
MAP = dict(atol=1e-5, rtol=0)


def _cases():
    if ROOT is None:
        return []
    out = []
    for path in sorted(ROOT.glob('winclip_*.json')):
        meta = json.loads(path.read_text())
        slow = meta['open_clip_config']['vision_cfg'].get('layers', 12) > 4
        out.append(pytest.param(path.stem, marks=[pytest.mark.slow] if slow else [], id=path.stem))
    return out


def _input_batch(meta, fx):
    if 'input_batch' in fx.files:
        return fx['input_batch']
    for path in sorted(ROOT.glob('winclip_*.npz')):
        other = np.load(path)
        if 'input_batch' in other.files and hashlib.sha256(
                other['input_batch'].tobytes()).hexdigest() == meta['input_batch_sha256']:
            return other['input_batch']
    pytest.skip(f"no fixture holds the input batch {meta['input_batch_sha256'][:12]}")


@pytest.fixture(scope='module', params=_cases())
def case(request):
    """Model with the fixture's deterministic weights, its encoded input, and the fixture arrays."""
    meta = json.loads((ROOT / f'{request.param}.json').read_text())
    fx = np.load(ROOT / f'{request.param}.npz')
    backbone = MODELS.build(dict(type='OpenCLIPBackbone', arch=meta['open_clip_config']))
    state = det_state_dict_for(backbone.clip, meta['weight_seed'], root=ROOT.parent)
    assert {k: list(v.shape) for k, v in state.items()} == meta['param_shapes']
    backbone.clip.load_state_dict(state, strict=False)
    head = WinCLIPHead(scales=meta['scales'], temperature=meta['temperature'])
    images = torch.from_numpy(_input_batch(meta, fx))
    return dict(meta=meta, fx=fx, backbone=backbone.eval(), head=head, images=images,
                encoded=head.encode_images(backbone, images))


def test_parity_anomaly_winclip_image_side(case):
    fx, enc, visual = case['fx'], case['encoded'], case['backbone'].clip.visual
    from ovseg.models.anomaly import tokens_with_position
    with torch.no_grad():
        tokens, grid = tokens_with_position(visual, case['images'])
    np.testing.assert_allclose(tokens[:, :fx['feature_map_first17tokens'].shape[1]].numpy(),
                               fx['feature_map_first17tokens'], **EMB)
    assert list(grid) == case['meta']['grid_size']
    np.testing.assert_allclose(enc['image_embeddings'].numpy(), fx['image_embeddings'], **EMB)
    for k in case['meta']['scales']:
        np.testing.assert_array_equal(enc['masks'][k].numpy(), fx[f'window_masks_scale{k}'])
        if f'window_embeddings_scale{k}' in fx.files:
            np.testing.assert_allclose(enc['window_embeddings'][k].numpy(), fx[f'window_embeddings_scale{k}'],
                                       **EMB)


def test_parity_anomaly_winclip_prompts_and_text(case):
    meta, fx, head, backbone = case['meta'], case['fx'], case['head'], case['backbone']
    for name in meta['class_names']:
        normal, anomalous = head.prompts.prompts(name)
        assert normal == meta['prompts'][name]['normal']
        assert anomalous == meta['prompts'][name]['anomalous']
        per_prompt = head.prompts.state_embeddings(backbone, name)
        for state, prompts, emb in zip(('normal', 'anomalous'), (normal, anomalous), per_prompt):
            np.testing.assert_array_equal(head.prompts.tokenize(backbone, prompts).numpy(),
                                          fx[f'{name}__{state}_tokens'])
            if f'{name}__{state}_prompt_embeddings' in fx.files:
                np.testing.assert_allclose(emb.numpy(), fx[f'{name}__{state}_prompt_embeddings'], **EMB)
        np.testing.assert_allclose(head.prompts(backbone, name).numpy(), fx[f'{name}__text_embeddings'],
                                   **EMB)


def test_parity_anomaly_winclip_scores_and_maps(case):
    meta, fx, head, backbone = case['meta'], case['fx'], case['head'], case['backbone']
    for name in meta['class_names']:
        out = head.score(case['encoded'], head.prompts(backbone, name))
        np.testing.assert_allclose(out['image_scores'].numpy(), fx[f'{name}__image_scores'], **MAP)
        for k in meta['scales']:
            np.testing.assert_allclose(out['window_scores'][k].numpy(), fx[f'{name}__window_scores_scale{k}'],
                                       **MAP)
        np.testing.assert_allclose(out['scale_maps'].numpy(), fx[f'{name}__scale_maps'], **MAP)
        np.testing.assert_allclose(out['patch_map'].numpy(), fx[f'{name}__multiscale_map'], **MAP)
        np.testing.assert_allclose(out['anomaly_map'].numpy(), fx[f'{name}__anomaly_map'], **MAP)


def test_parity_anomaly_winclip_forward_matches_parts(case):
    """forward() with per-image class names equals scoring each class name separately."""
    meta, head, backbone = case['meta'], case['head'], case['backbone']
    names = [meta['class_names'][i % len(meta['class_names'])] for i in range(len(case['images']))]
    expected = torch.stack([head.score(case['encoded'], head.prompts(backbone, n))['anomaly_map'][i]
                            for i, n in enumerate(names)])
    got = head.score(case['encoded'], head.text_embeddings(backbone, names))['anomaly_map']
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
