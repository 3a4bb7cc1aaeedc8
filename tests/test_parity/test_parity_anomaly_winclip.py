"""WinCLIP parity with anomalib 2.7.0's zero-shot WinClipModel (fixtures in $OVSEG_PARITY_DIR/anomaly).

Every ``winclip_*.json`` / ``.npz`` pair in the folder is a case; a case whose npz lacks
``input_batch`` uses the input of the case with the same ``input_batch_sha256``. Cases with more than
four vision layers (the full ViT-B-16-plus-240, ~1 min on a CPU) are marked slow.

Tolerances (``ovseg.testing.tolerance``): patch embedding plus position is one reduction over the
3 x p x p patch; image and window embeddings are the vision tower's L blocks (MLP width 4 x width) plus
the projection; prompt and text embeddings the text tower's blocks plus the projection; all relative to
their largest value. The anomalous probability is softmax(cos / T) over [normal, anomalous], i.e.
sigmoid(<f, t_a - t_n> / T) for unit vectors, so the embeddings' relative error reaches it on the scale
|t_a - t_n| / (4 T), plus a few float32 roundings of values near 0.5; window
averages, harmonic means, the multiscale map and the bilinear upsampling are means of such values.
"""
import hashlib
import json

import numpy as np
import pytest
import torch

from ovseg.models.decode_heads import WinCLIPHead
from ovseg.registry import MODELS
from ovseg.testing import EPS32, assert_close, det_state_dict_for, parity_dir

FOLDER = 'anomaly'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _cases():
    if ROOT is None:
        return []
    out = []
    for path in sorted(ROOT.glob('winclip_*.json')):
        meta = json.loads(path.read_text())
        slow = meta['open_clip_config']['vision_cfg'].get('layers', 12) > 4
        out.append(pytest.param(path.stem, marks=[pytest.mark.slow] if slow else [], id=path.stem))
    return out


def _vision(meta, extra=1):
    vision = meta['open_clip_config']['vision_cfg']
    return dict(depth=vision['layers'] + extra, width=4 * vision['width'])


def _text(meta):
    text = meta['open_clip_config']['text_cfg']
    return dict(depth=text['layers'] + 1, width=4 * text['width'])


def _scores(meta, fx, name):
    """Probabilities sigmoid(<f, t_a - t_n> / T): the embeddings' error on |t_a - t_n| / (4 T)."""
    text = fx[f'{name}__text_embeddings']
    unit = text / np.linalg.norm(text, axis=-1, keepdims=True)
    scale = np.linalg.norm(unit[1] - unit[0]) / (4 * meta['temperature'])
    return dict(_vision(meta, extra=3), scale=scale, atol=16 * EPS32)


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
    patch = case['meta']['open_clip_config']['vision_cfg'].get('patch_size', 16)
    assert_close(tokens[:, :fx['feature_map_first17tokens'].shape[1]], fx['feature_map_first17tokens'],
                 depth=2, width=3 * patch * patch, name='embedded tokens')
    assert list(grid) == case['meta']['grid_size']
    assert_close(enc['image_embeddings'], fx['image_embeddings'], **_vision(case['meta']), name='image_embeddings')
    for k in case['meta']['scales']:
        np.testing.assert_array_equal(enc['masks'][k].numpy(), fx[f'window_masks_scale{k}'])
        if f'window_embeddings_scale{k}' in fx.files:
            assert_close(enc['window_embeddings'][k], fx[f'window_embeddings_scale{k}'], **_vision(case['meta']),
                         name=f'window_embeddings_scale{k}')


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
                assert_close(emb, fx[f'{name}__{state}_prompt_embeddings'], **_text(meta), name=f'{name} {state}')
        assert_close(head.prompts(backbone, name), fx[f'{name}__text_embeddings'], **_text(meta),
                     name=f'{name}__text_embeddings')


def test_parity_anomaly_winclip_scores_and_maps(case):
    meta, fx, head, backbone = case['meta'], case['fx'], case['head'], case['backbone']
    for name in meta['class_names']:
        out, tol = head.score(case['encoded'], head.prompts(backbone, name)), _scores(meta, fx, name)
        assert_close(out['image_scores'], fx[f'{name}__image_scores'], **tol, name=f'{name} image_scores')
        for k in meta['scales']:
            assert_close(out['window_scores'][k], fx[f'{name}__window_scores_scale{k}'], **tol,
                         name=f'{name} window_scores_scale{k}')
        assert_close(out['scale_maps'], fx[f'{name}__scale_maps'], **tol, name=f'{name} scale_maps')
        assert_close(out['patch_map'], fx[f'{name}__multiscale_map'], **tol, name=f'{name} multiscale_map')
        assert_close(out['anomaly_map'], fx[f'{name}__anomaly_map'], **tol, name=f'{name} anomaly_map')


def test_parity_anomaly_winclip_forward_matches_parts(case):
    """forward() with per-image class names equals scoring each class name separately."""
    meta, head, backbone = case['meta'], case['head'], case['backbone']
    names = [meta['class_names'][i % len(meta['class_names'])] for i in range(len(case['images']))]
    expected = torch.stack([head.score(case['encoded'], head.prompts(backbone, n))['anomaly_map'][i]
                            for i, n in enumerate(names)])
    got = head.score(case['encoded'], head.text_embeddings(backbone, names))['anomaly_map']
    assert_close(got, expected, depth=2, scale=1.0, name='per-image class names')  # same numbers, other batching


def test_parity_anomaly_winclip_tolerance_catches_defects(case):
    """A temperature of 0.08 instead of 0.07 and maps upsampled with align_corners=True fail."""
    meta, fx, backbone = case['meta'], case['fx'], case['backbone']
    name = meta['class_names'][0]
    tol = _scores(meta, fx, name)
    warm = WinCLIPHead(scales=meta['scales'], temperature=0.08)
    wrong = warm.score(case['encoded'], warm.prompts(backbone, name))['anomaly_map']
    with pytest.raises(AssertionError):
        assert_close(wrong, fx[f'{name}__anomaly_map'], **tol)
    patch_map = case['head'].score(case['encoded'], case['head'].prompts(backbone, name))['patch_map']
    shifted = torch.nn.functional.interpolate(patch_map[:, None], size=fx[f'{name}__anomaly_map'].shape[-2:],
                                              mode='bilinear', align_corners=True)[:, 0]
    with pytest.raises(AssertionError):
        assert_close(shifted, fx[f'{name}__anomaly_map'], **tol)
