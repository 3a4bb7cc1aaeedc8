"""AdaptCLIP parity with gaobb/AdaptCLIP (fixtures in $OVSEG_PARITY_DIR/adaptclip).

The model is built from the manifest's ``model`` (reduced depth, ViT-L/14@336 widths) and ``method``
(taps, DPAM blocks, adapter sizes) with the fixture's deterministic weights: every CLIP tensor, and the
three adapters' tensors, which go through ``tools/model_converters/adaptclip_to_ovseg.py`` exactly as a
released checkpoint would (so the converter's key map is checked too). The few-shot memory is built from
the fixture's reference images, then every case of the manifest is scored zero- and few-shot.
The first case runs by default; the others (~25 s each on two CPU cores) are marked slow.

Tolerances (``ovseg.testing.tolerance``): tokens come out of ``vision layers`` blocks with a 4 x width MLP
plus the patch embedding and ``ln_post``/``proj`` (depth = layers + 2, width 4 x vision width, scale
max|expected|); the adapters add two stages (the visual adapter's MLP) and the prompt-query head five (its
convolutions and MLP), so everything after them uses depth + 2 or depth + 5 at scale 1 (cosines,
probabilities, maps) or 1 / temperature (logits). Text features: text layers + 2, width 4 x text width.
Token ids are exact. The nearest-reference choice is compared where the expected runner-up is farther
than the distance tolerance (the manifest's ``pq_nn_gap``); where it differs (a near tie, allowed), the
fused features at that patch and the maps within 4 grid cells of it (the local head's 3x3 convolutions,
2 up-convolutions and the Gaussian reach 3 cells) are not compared.
"""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.anomaly.value_value_attention import resize_pos_embed
from ovseg.registry import MODELS
from ovseg.testing import (assert_close, assert_equal_away_from_ties, det_state_dict_for, load_detweights,
                           load_tool, parity_dir, tolerance_for)

FOLDER = 'adaptclip'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text()) if ROOT is not None else {}


def _case_params():
    names = sorted(_manifest().get('cases', {}))
    return [pytest.param(n, marks=[pytest.mark.slow] if i else [], id=n) for i, n in enumerate(names)]


def clip_arch(cfg):
    """Inline open_clip config of the original ``build_model`` dimensions (OpenAI CLIP: QuickGELU)."""
    return dict(embed_dim=cfg['embed_dim'], quick_gelu=True,
                vision_cfg=dict(image_size=cfg['image_resolution'], layers=cfg['vision_layers'],
                                width=cfg['vision_width'], patch_size=cfg['vision_patch_size'],
                                head_width=cfg['vision_width'] // cfg['vision_heads']),
                text_cfg=dict(context_length=cfg['context_length'], vocab_size=cfg['vocab_size'],
                              width=cfg['transformer_width'], heads=cfg['text_heads'],
                              layers=cfg['transformer_layers']))


def original_checkpoint(man):
    """The adapters' deterministic weights as the original ``{'textual_learner': ..., ...}`` file holds them."""
    det = load_detweights(ROOT.parent)
    shapes = {k: tuple(v) for k, v in man['weights']['adapters'].items()}
    drawn = {k: torch.from_numpy(v) for k, v in det.det_state_dict(shapes, seed=man['seed']).items()}
    for alias, source in man['weights']['adapters_shared_keys'].items():
        drawn[alias] = drawn[source]
    checkpoint = {}
    for key, value in drawn.items():
        adapter, rest = key.split('.', 1)
        checkpoint.setdefault(adapter, {})[rest] = value
    return checkpoint


@pytest.fixture(scope='module')
def model():
    man = _manifest()
    cfg, method = man['model'], man['method']
    head = dict(type='AdaptCLIPHead', n_ctx=method['n_ctx'], features=method['features_list'],
                vv_blocks=method['DPAM_layer'] - 1, vl_reduction=method['vl_reduction'],
                pq_mid_dim=method['pq_mid_dim'], pq_context=method['pq_context'], pq_topk=method['pq_topk'],
                temperature=method['temperature'], sigma=method['sigma'], fusion=method['fusion_type'])
    seg = MODELS.build(dict(type='AdaptCLIPSegmentor', backbone=dict(type='OpenCLIPBackbone', arch=clip_arch(cfg)),
                            head=head))
    state = det_state_dict_for(seg.backbone.clip, man['seed'], root=ROOT.parent)
    assert {k: list(v.shape) for k, v in state.items()} == man['weights']['clip_model']
    seg.backbone.clip.load_state_dict(state, strict=False)
    converted = load_tool('model_converters/adaptclip_to_ovseg').convert(original_checkpoint(man))
    missing, unexpected = seg.load_state_dict(converted, strict=False)
    assert not unexpected and all(k.startswith('backbone.') for k in missing)
    seg.eval()
    vision = dict(depth=cfg['vision_layers'] + 2, width=4 * cfg['vision_width'])
    return dict(man=man, head=seg.head, backbone=seg.backbone, vision=vision,
                text=dict(depth=cfg['transformer_layers'] + 2, width=4 * cfg['transformer_width']),
                adapted=dict(depth=vision['depth'] + 2, width=vision['width']),
                pq=dict(depth=vision['depth'] + 5, width=vision['width']))


@pytest.fixture(scope='module')
def text(model):
    head, backbone = model['head'], model['backbone']
    with torch.no_grad():
        return head.static_text(backbone), head.learned_text(backbone)


@pytest.fixture(scope='module')
def memory(model):
    fx = np.load(ROOT / model['man']['fewshot_memory']['file'])
    return fx, model['head'].build_memory(model['backbone'], torch.from_numpy(fx['ref_pixel_values']))


def test_parity_adaptclip_text_and_positions(model, text):
    head, backbone, man = model['head'], model['backbone'], model['man']
    fx = np.load(ROOT / man['model_text']['file'])
    normal, anomalous = head.static_prompts.prompts(head.class_word)
    assert normal == man['method']['static_sentences_normal']
    assert anomalous == man['method']['static_sentences_anomaly']
    np.testing.assert_array_equal(head.static_prompts.tokenize(backbone, normal + anomalous).numpy(),
                                  fx['static_tokens'])
    assert list(head.textual_adapter.texts) == [man['method']['learned_prompt_text']] * 2
    tokens = head.textual_adapter.tokenized_prompts(backbone.tokenizer)
    np.testing.assert_array_equal(tokens.numpy(), fx['tokenized_prompts'])
    prompts = head.textual_adapter(backbone.clip.token_embedding, tokens).detach()
    np.testing.assert_array_equal(prompts.numpy(), fx['learned_prompts'])
    assert_close(text[0], fx['static_text_features'], **model['text'], name='fixed text features')
    assert_close(text[1], fx['learned_text_features'], **model['text'], name='learned text features')
    grid = (man['method']['grid'],) * 2
    pos = resize_pos_embed(backbone.clip.visual.positional_embedding, grid, 'bilinear')
    assert_close(pos[fx['pos_idx']], fx['pos_embed_interp_sub'], depth=1, width=4, name='resized positions')


def test_parity_adaptclip_memory(model, memory):
    """The memory banks (normalised patch tokens, class token dropped) at the stored token rows."""
    fx, mem = memory
    rows = fx['tok_idx'][fx['tok_idx'] > 0]
    grid = mem['grid'][0] * mem['grid'][1]
    banks = torch.stack([b.reshape(mem['num_references'], grid, -1)[:, rows - 1] for b in mem['banks']])
    expected = torch.nn.functional.normalize(torch.from_numpy(fx['ref_patch_tokens_sub'][:, :, fx['tok_idx'] > 0]),
                                             dim=-1)
    assert_close(banks, expected, **dict(model['vision'], scale=1.0), name='memory banks')
    assert_close(mem['image_features'], fx['ref_image_features'], **model['vision'], name='memory image features')


def _flip_mask(nn_index, expected, grid, size, radius=4):
    """(taps, L) chosen indices -> (H, W) pixels within ``radius`` cells of a patch whose choice differs."""
    flipped = torch.from_numpy((nn_index != expected).any(axis=0).reshape(1, 1, *grid).astype(np.float32))
    near = F.max_pool2d(flipped, 2 * radius + 1, stride=1, padding=radius)
    return F.interpolate(near, size=size, mode='nearest')[0, 0].numpy() > 0


@pytest.fixture(scope='module')
def encoded(model):
    """Encoded query of a case, computed once per module."""
    cache = {}

    def encode(name):
        if name not in cache:
            images = torch.from_numpy(np.load(ROOT / name)['pixel_values'])
            cache[name] = model['head'].encode_images(model['backbone'], images)
        return cache[name]
    return encode


@pytest.mark.parametrize('name', _case_params())
def test_parity_adaptclip_case(model, text, memory, encoded, name):
    fx = np.load(ROOT / name)
    head = model['head']
    images = torch.from_numpy(fx['pixel_values'])
    size, rows, cols = images.shape[-2:], fx['row_idx'], fx['tok_idx']
    enc = encoded(name)
    with torch.no_grad():
        zs = head.score(enc, *text, size)
        fs = head.score(enc, *text, size, memory[1])
    vision, adapted, pq = model['vision'], model['adapted'], model['pq']
    probs, logits = dict(pq, scale=1.0), dict(pq, scale=1.0 / head.temperature)
    # tower
    assert_close(torch.stack([enc['raw_tokens'][f][0, cols] for f in head.features]), fx['vv_tokens_sub'],
                 **vision, name='V-V tokens')
    if 'ori_tokens_sub' in fx.files:
        assert_close(torch.stack([enc['ori_tokens'][f][0, cols] for f in head.features]), fx['ori_tokens_sub'],
                     **vision, name='original-path tokens')
    assert_close(enc['final_ori_cls'], fx['final_ori_cls'], **vision, name='final class token')
    assert_close(torch.stack([t[0, cols] for t in enc['tokens']]), fx['patch_tokens_sub'], **vision,
                 name='projected tokens')
    assert_close(enc['image_features'], fx['image_features'], **vision, name='image features')
    # zero-shot: visual and textual adapters
    assert_close(zs['vl_image_feature'], fx['vl_image_feature'], **adapted, name='adapted image feature')
    assert_close(zs['vl_tokens'][0, cols], fx['vl_patch_feature_sub'], **adapted, name='adapted tokens')
    for branch in ('vl', 'tl'):
        assert_close(zs[f'{branch}_logits'], fx[f'{branch}_logits'], **logits, name=f'{branch} logits')
        assert_close(zs[f'{branch}_image_score'], fx[f'{branch}_image_score'], **probs, name=f'{branch} score')
        assert_close(zs[f'{branch}_similarity'], fx[f'{branch}_similarity'], **probs, name=f'{branch} similarity')
        assert_close(zs[f'{branch}_maps'][:, 1][:, rows], fx[f'{branch}_map_rows'], **probs, name=f'{branch} map')
    assert_close(zs['anomaly_map_raw'][:, rows], fx['zs_map_raw_rows'], **probs, name='zero-shot raw map')
    assert_close(zs['anomaly_map'], fx['zs_anomaly_map'], **probs, name='zero-shot map')
    assert_close(zs['anomaly_map'].flatten(1).amax(1), fx['zs_map_max'], **probs, name='zero-shot map maximum')
    assert_close(zs['image_scores'], fx['zs_image_score'], **probs, name='zero-shot image score')
    # few-shot: prompt-query adapter
    grid = tuple(enc['grid'])
    chosen = torch.stack(fs['pq_nn_index'])[:, 0].numpy()
    assert_close(torch.stack(fs['pq_align']).reshape(fx['pq_align_grid'].shape), fx['pq_align_grid'],
                 **dict(vision, scale=1.0), name='align scores')
    tol = tolerance_for(fx['pq_align_grid'], **dict(vision, scale=1.0))
    assert_equal_away_from_ties(chosen, fx['pq_nn_index'], fx['pq_nn_gap'], tol, max_near_fraction=0.5,
                                name='nearest memory patch')
    same = (chosen == fx['pq_nn_index'])[:, cols[1:] - 1, None]
    for key in ('pq_fusion', 'pq_fusion_bn'):
        got = torch.stack([f[0].flatten(1).t()[cols[1:] - 1] for f in fs[key]])
        assert_close(got, fx[f'{key}_sub'], **dict(vision, scale=1.0 if key == 'pq_fusion' else None),
                     where=same, name=key)
    keep = ~_flip_mask(chosen, fx['pq_nn_index'], grid, tuple(size))[rows]
    for key, expected in (('pq_local_maps', 'pq_local_map_rows'), ('pq_align_maps', 'pq_align_map_rows')):
        channel = 1 if key == 'pq_local_maps' else 0
        assert_close(torch.stack([m[:, channel][:, rows] for m in fs[key]]), fx[expected], **probs,
                     where=keep, name=key)
    if 'pq_local_logits' in fx.files:
        local_keep = ~_flip_mask(chosen, fx['pq_nn_index'], grid, fx['pq_local_logits'].shape[-2:])
        assert_close(torch.stack(fs['pq_local_logits']), fx['pq_local_logits'], **probs, where=local_keep,
                     name='local logits')
    assert_close(torch.stack(fs['pq_global_logits']), fx['pq_global_logits'], **probs, name='global logits')
    assert_close(fs['pq_image_score'], fx['pq_image_score'], **probs, name='prompt-query score')
    for key, expected in (('pq_map', 'pq_map_mean_rows'), ('align_map', 'align_hmean_rows'),
                          ('map_avg', 'fs_map_avg_rows'), ('anomaly_map_raw', 'fs_map_raw_rows')):
        assert_close(fs[key][:, rows], fx[expected], **probs, where=keep, name=key)
    full_keep = ~_flip_mask(chosen, fx['pq_nn_index'], grid, tuple(size))
    if 'fs_map_raw' in fx.files:
        assert_close(fs['anomaly_map_raw'], fx['fs_map_raw'], **probs, where=full_keep, name='few-shot raw map')
    assert_close(fs['anomaly_map'], fx['fs_anomaly_map'], **probs, where=full_keep, name='few-shot map')
    assert_close(fs['anomaly_map'].flatten(1).amax(1), fx['fs_map_max'], **probs, name='few-shot map maximum')
    assert_close(fs['image_avg'], fx['fs_image_avg'], **probs, name='few-shot score average')
    assert_close(fs['image_scores'], fx['fs_image_score'], **probs, name='few-shot image score')


def test_parity_adaptclip_tolerance_catches_defects(model, text, memory, encoded):
    """On the first case: a softmax temperature of 0.08 instead of 0.07 fails the zero-shot map; the fusion
    without the query's context (|q - p| instead of q + |q - p|) fails the fusion features; the align maps
    averaged arithmetically instead of harmonically over the taps fail the few-shot map. (With these random
    adapter weights the prompt-query head's output sits at 0.5 whatever its input, so a fusion defect shows
    in the fusion features, not in the final map.)"""
    from ovseg.models.anomaly.adaptclip import harmonic_mean
    from ovseg.models.anomaly.anomalyclip import gaussian_filter2d
    name = sorted(model['man']['cases'])[0]
    fx, head = np.load(ROOT / name), model['head']
    enc, size = encoded(name), fx['zs_anomaly_map'].shape[-2:]
    probs = dict(model['pq'], scale=1.0)
    head.temperature = 0.08
    try:
        with torch.no_grad():
            warm = head.score(enc, *text, size)['anomaly_map']
    finally:
        head.temperature = model['man']['method']['temperature']
    with pytest.raises(AssertionError, match='differ by more than'):
        assert_close(warm, fx['zs_anomaly_map'], **probs)
    with torch.no_grad():
        out = head.score(enc, *text, size, memory[1])
    cols = fx['tok_idx'][1:] - 1
    query = torch.stack([torch.nn.functional.normalize(t, dim=-1)[0, 1:][cols] for t in enc['tokens']])
    with_context = torch.stack([f[0].flatten(1).t()[cols] for f in out['pq_fusion']])
    with pytest.raises(AssertionError, match='differ by more than'):  # |q - p| = (q + |q - p|) - q
        assert_close(with_context - query, fx['pq_fusion_sub'], **dict(model['vision'], scale=1.0),
                     where=~fx['pq_nn_fragile'][:, cols, None])
    align = torch.stack(out['pq_align_maps']).mean(dim=0)[:, 0]
    wrong = gaussian_filter2d(harmonic_mean([out['map_avg'], align]), head.sigma)
    with pytest.raises(AssertionError, match='differ by more than'):
        assert_close(wrong, fx['fs_anomaly_map'], **probs)
