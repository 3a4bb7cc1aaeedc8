"""Checks shared by the SCLIP, ClearCLIP and NACLIP parity tests (same fixture format, same pipeline).

Tolerances follow ``ovseg.testing.tolerance`` (float32 error model ``depth * sqrt(width) * eps * scale``):
the vision tower has ``L`` blocks of width 768 whose widest reduction is the MLP (3072), so a token row
after block i has depth i + 1 (patch embedding first) and width 3072 at the scale of the tokens;
attention weights inherit the error of their logits (scale: the largest logit of the row set, depth of the
last block); cosines are unit-scale; probabilities are softmaxes of ``logit_scale`` x cosines, so their
scale is ``logit_scale``. The text tower (2 layers of width 256, MLP 1024) gives unit-norm embeddings.
Label maps are compared away from near ties (top-2 gap or distance to ``prob_thd`` within the
probability tolerance): on the stored probability grid with the expected probabilities' margins, and at
full resolution with our own probabilities' margins against twice the tolerance (an expected margin
above the tolerance is an actual margin above zero, and conversely). The fixtures' random weights give
nearly flat class scores (cosines within about 0.1 of each other), so some of the pixels are within the
float32 tolerance of a tie, a share that depends on the case (its image, seed and vocabulary), not on the
implementation: ``MAX_NEAR`` therefore does not bound it; every other pixel is compared exactly, and at most
``max_flips`` pixels may differ at all, near ties included (a wrong result cannot pass by being near ties).
"""
import json
from functools import lru_cache

import numpy as np
import torch

from ovseg.testing import (assert_close, assert_equal_away_from_ties, parity_dir, threshold_margin, tolerance_for,
                           top2_margin)
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.testing.query_parity import build_segmentor, configure, segmentor_input, window_intermediates

MLP_WIDTH = 3072
TEXT_WIDTH = 1024
MAX_NEAR = 1.0  # see the module docstring: flips are bounded, not the share of near ties


def manifest(folder):
    return json.loads((parity_dir(folder) / 'manifest.json').read_text())


def cases(folder):
    root = parity_dir(folder)
    return sorted(manifest(folder)['cases']) if root is not None else []


_WEIGHTS = {}


@lru_cache(maxsize=3)
def segmentor(folder):
    """The folder's segmentor; the three folders draw the same weights (same names, shapes and seed)."""
    man = manifest(folder)
    key = (man['seed'], tuple(sorted((k, tuple(v)) for k, v in man['weights']['shapes'].items())))
    model = build_segmentor(man, folder, parity_dir(folder).parent, _WEIGHTS.get(key))
    _WEIGHTS.setdefault(key, {k: v for k, v in model.backbone.clip.state_dict().items()
                             if k in man['weights']['shapes']})
    return model


def load(folder, case):
    man = manifest(folder)
    model = segmentor(folder)
    hp = configure(model, man, folder, case)
    return man, man['cases'][case], hp, model, np.load(parity_dir(folder) / man['cases'][case]['file'])


@lru_cache(maxsize=4)
def stitched(folder, case):
    """The stitched logits of a case (one inference, shared by the tests of the case)."""
    _, _, _, model, fx = load(folder, case)
    with torch.no_grad():
        return model.inference(torch.from_numpy(fx['pixel_values']))


@lru_cache(maxsize=4)
def refined(folder, case):
    """The stitched logits at the original size after the post-processors (PAMR for NACLIP)."""
    _, _, _, model, fx = load(folder, case)
    x = torch.from_numpy(fx['pixel_values'])
    logit, image = model._to_original(stitched(folder, case), x, _sample(x).metainfo, x.shape[-2:])
    with torch.no_grad():
        return model.refine(logit, image)[0]


def pick(fx, name):
    """(array, step): the full array, or its ``_sub`` slice ``[..., ::4, ::4]``."""
    return (fx[name], 1) if name in fx.files else (fx[f'{name}_sub'], 4)


def num_blocks(man):
    return man['model']['vision']['layers']


def check_text_and_input(folder, case):
    """Tokens exactly, embeddings (unit norm) and the preprocessed input."""
    _, info, _, model, fx = load(folder, case)
    assert model.vocabulary.synonyms == info['query_words']
    tc = model.text_classifier
    prompts = [t.format(q) for q in model.vocabulary.synonyms for t in tc.templates]
    tokens = tc.tokenize(model.backbone, prompts).numpy().reshape(fx['text_tokens'].shape)
    np.testing.assert_array_equal(tokens, fx['text_tokens'])
    emb = model.class_embeddings()
    assert_close(emb.embeddings, fx['text_emb'], depth=3, width=TEXT_WIDTH, scale=1.0, name='text_emb')
    np.testing.assert_array_equal(emb.synonym_to_class.numpy(), fx['query_idx'])
    pixels = segmentor_input(fx['image_uint8'], model.data_preprocessor)
    assert_close(pixels, fx['pixel_values'], depth=1, width=1, name='pixel_values')


def _rows(value, idx):
    return value.numpy()[idx]


def check_window(folder, case, extra=None):
    """The designated window through the walker: token rows, attention rows, dense features, logits."""
    man, _, _, model, fx = load(folder, case)
    x = torch.from_numpy(fx['pixel_values'])
    j = int(fx['w_index'])
    y1, y2, x1, x2 = (int(v) for v in fx['windows'][j])
    crop = x[:, :, y1:y2, x1:x2]
    if 'window_pads' in fx.files:
        crop = torch.nn.functional.pad(crop, tuple(int(v) for v in fx['window_pads'][j]))
    out = window_intermediates(model, crop)
    tok, q_idx, depth = fx['tok_idx'], fx['attn_q_idx'], num_blocks(man)
    assert tuple(out['grid']) == tuple(fx['win_logits_lowres'].shape[-2:])
    if 'w_pos_embed_sub' in fx.files:
        assert_close(_rows(out['pos_embed'], tok), fx['w_pos_embed_sub'], depth=1, width=16, name='pos_embed')
    assert_close(_rows(out['ln_pre_in'], tok), fx['w_ln_pre_in_sub'], depth=1, width=768, name='ln_pre_in')
    assert_close(_rows(out['ln_pre_out'], tok), fx['w_ln_pre_out_sub'], depth=2, width=768, name='ln_pre_out')
    for i in range(depth - 1):
        assert_close(_rows(out[f'block{i}_out'], tok), fx[f'w_block{i}_out_sub'], depth=i + 2, width=MLP_WIDTH,
                     name=f'block{i}_out')
    for name, key in (('last_ln1', 'w_last_ln1_sub'), ('q', 'w_q_sub'), ('k', 'w_k_sub'), ('v', 'w_v_sub')):
        assert_close(_rows(out[name], tok), fx[key], depth=depth + 1, width=MLP_WIDTH, name=name)
    heads = out['attn'].shape[0]
    qk = torch.cat([out['q'], out['k']]).view(-1, heads, out['q'].shape[-1] // heads)
    logit_scale = float((qk ** 2).sum(-1).max()) * (qk.shape[-1] ** -0.5)
    attn_tol = dict(depth=depth + 1, width=MLP_WIDTH, scale=logit_scale)
    assert_close(out['attn'][:, q_idx].numpy(), fx['w_attn_rows'], name='attn_rows', **attn_tol)
    last = out['last_out'].numpy()
    assert_close(last[tok], fx['w_last_out_sub'], depth=depth + 1, width=MLP_WIDTH, name='last_out')
    assert_close(out['ln_post'].numpy()[tok], fx['w_ln_post_sub'], depth=depth + 2, width=MLP_WIDTH, name='ln_post')
    dense = out['dense_feats'].numpy()
    if fx['w_dense_feats' if 'w_dense_feats' in fx.files else 'w_dense_feats_sub'].shape[-2] != dense.shape[0]:
        dense = dense[1:]  # ClearCLIP's encode_image returns the patch tokens only
    want, idx = (fx['w_dense_feats'][0], slice(None)) if 'w_dense_feats' in fx.files else \
        (fx['w_dense_feats_sub'], fx['patch_idx'] if 'patch_idx' in fx.files else tok)
    assert_close(dense[idx], want, depth=depth + 2, width=MLP_WIDTH, name='dense_feats')
    with torch.no_grad():
        lowres = model.lowres_logits(crop)[0]
    assert_close(lowres, fx['win_logits_lowres'][j], depth=depth + 3, width=MLP_WIDTH, scale=1.0,
                 name='win_logits_lowres')
    if extra is not None:
        extra(out, fx, attn_tol)
    return out, fx


def check_stitched(folder, case, key='seg_logits'):
    """Every window's low-resolution cosines and the stitched map (slide or whole)."""
    man, _, _, model, fx = load(folder, case)
    x = torch.from_numpy(fx['pixel_values'])
    depth = num_blocks(man)
    logits = stitched(folder, case)[0]
    want, step = pick(fx, key)
    assert_close(logits[:, ::step, ::step], want, depth=depth + 3, width=MLP_WIDTH, scale=1.0, name=key)
    boxes = [tuple(int(v) for v in box) for box in fx['windows']]
    np.testing.assert_array_equal(np.asarray(model_boxes(model, x), dtype=np.int64), np.asarray(boxes))
    return logits, fx


def model_boxes(model, x):
    from ovseg.models.utils.sliding_window import window_boxes
    cfg = model.test_cfg
    if cfg['mode'] == 'whole':
        return [(0, x.shape[-2], 0, x.shape[-1])]
    crop = cfg['crop_size']
    return window_boxes(x.shape[-2], x.shape[-1], (crop, crop), (cfg['stride'], cfg['stride']))


def check_prediction(folder, case):
    """Class probabilities, the area rule (SCLIP), the prediction and its thresholded pixels."""
    man, info, hp, model, fx = load(folder, case)
    emb = model.class_embeddings()
    scale = float(hp.get('logit_scale', 40))
    rules = (emb.synonym_to_class, emb.num_classes, scale, model.area_thd, model.prob_thd)
    probs, pred, area = query_probabilities(refined(folder, case), *rules, model.renormalize)
    pred = pred[0].numpy()
    want, step = pick(fx, 'seg_probs')
    tol = tolerance_for(want, depth=num_blocks(man) + 3, width=MLP_WIDTH, scale=scale)
    assert_close(probs[:, ::step, ::step], want, depth=num_blocks(man) + 3, width=MLP_WIDTH, scale=scale,
                 name='seg_probs')
    prob_thd = float(hp.get('prob_thd', 0.0))
    # NACLIP's threshold reads the probabilities before its renormalisation
    raw = query_probabilities(refined(folder, case), *rules, False)[0].numpy() if model.renormalize else probs.numpy()
    thd_margin = threshold_margin(raw.max(axis=0), prob_thd) if prob_thd > 0 else np.inf
    # sub-grid: the expected probabilities' top-2 margins (renormalising keeps their order); the
    # threshold margin from our unnormalised maximum, less one tolerance
    margin = np.minimum(top2_margin(want, axis=0), np.asarray(thd_margin - tol)[..., ::step, ::step]
                        if prob_thd > 0 else np.inf)
    assert_equal_away_from_ties(pred[::step, ::step], fx['pred'][::step, ::step], margin, tol, name='pred_sub',
                                max_near_fraction=MAX_NEAR)
    # full resolution: our own margins against twice the tolerance
    margin = np.minimum(top2_margin(raw, axis=0), thd_margin)
    assert_equal_away_from_ties(pred, fx['pred'], margin, 2 * tol, name='pred', max_near_fraction=MAX_NEAR)
    differ = pred != fx['pred']
    if 'area_counts' in fx.files:
        counts = area['area_counts'].numpy()
        assert np.abs(counts - fx['area_counts']).max() <= int(differ.sum())
        margins = np.abs(np.asarray(info['decision_margins']['area_margin_pixels']))
        assert_equal_away_from_ties(area['area_keep'].numpy().astype(np.uint8), fx['area_keep'], margins,
                                    float(differ.sum()), name='area_keep', max_near_fraction=1.0)
    return probs, fx


def _sample(x):
    from mmseg.structures import SegDataSample
    shape = tuple(x.shape[-2:])
    return SegDataSample(metainfo=dict(ori_shape=shape, img_shape=shape))
