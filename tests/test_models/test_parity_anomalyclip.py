"""AnomalyCLIP parity with zqhang/AnomalyCLIP (fixtures in $OVSEG_PARITY_DIR/anomalyclip).

The model is built from the manifest's ``config`` (reduced depth, ViT-L/14@336 widths) with the
fixture's deterministic weights for every CLIP key and for the prompt learner's drawn keys (the never
used ``compound_prompt_projections`` are not part of this port). Checked: prompt strings, token ids
and embeddings, deep prompts as used (float16), text block outputs and features, the resized
positional embedding, raw and projected DPAM tokens, image features, per-layer similarities and maps,
the summed and the smoothed map, the image score, and for the manifest's loss batch every loss term
and the gradients of the learnable prompts.

Tolerances (README: tokens/features 1e-5, probabilities and maps 1e-5, losses and gradients 1e-4
relative): tokens and features atol 1e-5 plus rtol 1e-5 (raw tokens reach |x| ~ 12, where float32
itself is ~1e-6 apart); the deep-prompt gradient is compared by its norm (relative 1e-4) and
elementwise to 1e-3 of its largest entry, because the reference rounds each prompt's gradient to
float16 (item 2 of ``anomalyclip/head.py``): an entry whose float32 value lies within a float32 error
of a float16 rounding boundary rounds the other way (one float16 step of the per-prompt gradient,
~5e-4 relative).
"""
import json

import numpy as np
import pytest
import torch

from ovseg.models.anomaly.anomalyclip import AnomalyCLIPHead, gaussian_filter2d
from ovseg.models.anomaly.value_value_attention import resize_pos_embed
from ovseg.registry import MODELS
from ovseg.testing import det_state_dict_for, load_detweights, parity_dir

FOLDER = 'anomalyclip'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
FEATS = dict(atol=1e-5, rtol=1e-5)
MAPS = dict(atol=1e-5, rtol=0)
LOSS = dict(atol=0, rtol=1e-4)


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text()) if ROOT is not None else None


def _case_names():
    man = _manifest()
    return sorted(man['cases']) if man else []


def clip_arch(cfg):
    """Inline open_clip config of the reference's ``build_model`` dimensions (OpenAI CLIP: QuickGELU)."""
    return dict(embed_dim=cfg['embed_dim'], quick_gelu=True,
                vision_cfg=dict(image_size=cfg['image_resolution'], layers=cfg['vision_layers'],
                                width=cfg['vision_width'], patch_size=cfg['vision_patch_size'],
                                head_width=cfg['vision_width'] // cfg['vision_heads']),
                text_cfg=dict(context_length=cfg['context_length'], vocab_size=cfg['vocab_size'],
                              width=cfg['transformer_width'], heads=cfg['transformer_heads'],
                              layers=cfg['transformer_layers']))


def head_cfg(cfg):
    """``AnomalyCLIPHead`` arguments of the reference's design details, features and DPAM layer."""
    design = cfg['design_details']
    assert list(cfg['feature_map_layer']) == list(range(len(cfg['features_list'])))  # every tapped layer
    return dict(text_width=cfg['transformer_width'], n_ctx=design['Prompt_length'],
                text_depth=design['learnabel_text_embedding_depth'],
                text_n_ctx=design['learnabel_text_embedding_length'], features=cfg['features_list'],
                vv_blocks=cfg['DPAM_layer'] - 1, sigma=cfg['sigma'])


@pytest.fixture(scope='module')
def manifest():
    return _manifest()


@pytest.fixture(scope='module')
def model(manifest):
    cfg = manifest['config']
    backbone = MODELS.build(dict(type='OpenCLIPBackbone', arch=clip_arch(cfg)))
    state = det_state_dict_for(backbone.clip, manifest['seed'], root=ROOT.parent)
    assert {k: list(v.shape) for k, v in state.items()} == manifest['det_weights']['clip_model']
    backbone.clip.load_state_dict(state, strict=False)
    head = AnomalyCLIPHead(**head_cfg(cfg))
    drawn = manifest['det_weights']['prompt_learner_drawn']
    own = {k: tuple(v.shape) for k, v in head.prompt_learner.state_dict().items()}
    assert all(list(shape) == drawn[k] for k, shape in own.items())
    assert sorted(set(drawn) - set(own)) == sorted(k for k in drawn if k.startswith('compound_prompt_projections'))
    det = load_detweights(ROOT.parent)
    head.prompt_learner.load_state_dict({k: torch.from_numpy(v) for k, v in
                                         det.det_state_dict(own, seed=manifest['seed']).items()})
    return backbone.eval(), head


@pytest.fixture(scope='module')
def text_out(model):
    backbone, head = model
    record = []
    with torch.no_grad():
        prompts, tokens = head.prompts(backbone)
        text = head.text_features(backbone, record)
    return dict(prompts=prompts, tokens=tokens, text=text, blocks=record)


@pytest.fixture(scope='module')
def encoded(model, manifest):
    """Vision outputs of every case (reused by the loss test: the tower is frozen)."""
    backbone, head = model
    return {name: head.encode_images(backbone, torch.from_numpy(np.load(ROOT / name)['pixel_values']))
            for name in _case_names()}


@pytest.mark.parametrize('name', _case_names())
def test_parity_anomalyclip_resize(name, manifest):
    """The configs' resize (mmcv Resize, PIL bicubic) reproduces the reference's torchvision resize."""
    import hashlib
    import re

    import mmcv
    import skimage.data
    meta = manifest['cases'][name]
    source = re.fullmatch(r'skimage\.data\.(\w+)\(\)', meta['image'])
    if source is None:
        pytest.skip(f"unknown image source {meta['image']!r}")
    raw = getattr(skimage.data, source.group(1))()
    if raw.ndim == 2 and meta.get('grey_stacked_to_rgb'):
        raw = np.repeat(raw[..., None], 3, axis=-1)
    if hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest() != meta['raw_sha256']:
        pytest.skip(f"this scikit-image's {source.group(1)}() differs from the fixture's")
    expected = np.load(ROOT / name)['image_uint8']
    resized = mmcv.imresize(raw, expected.shape[1::-1], interpolation='bicubic', backend='pillow')
    np.testing.assert_array_equal(resized, expected)


def test_parity_anomalyclip_prompts_and_text(model, text_out, manifest):
    backbone, head = model
    fx = np.load(ROOT / manifest['model_text']['file'])
    assert list(head.prompt_learner.texts) == [manifest['prompt_texts']['normal'],
                                               manifest['prompt_texts']['anomalous']]
    np.testing.assert_array_equal(text_out['tokens'].numpy(), fx['tokenized_prompts'])
    np.testing.assert_allclose(text_out['prompts'].numpy(), fx['prompts'], atol=1e-6, rtol=0)
    deep = torch.stack(list(head.prompt_learner.compound_prompts_text)).detach()
    np.testing.assert_array_equal(deep.numpy(), fx['compound_prompts_text'])
    np.testing.assert_array_equal(deep.half().float().numpy(), fx['compound_prompts_as_used'])
    subset = fx['text_block_out_sub'].shape[2]
    blocks = torch.stack([b[:, :subset] for b in text_out['blocks']]).numpy()
    np.testing.assert_allclose(blocks, fx['text_block_out_sub'], **FEATS)
    np.testing.assert_allclose(text_out['text'].numpy(), fx['text_features'][0], **FEATS)
    raw = torch.nn.functional.normalize(torch.from_numpy(fx['text_features_raw']), dim=-1)
    np.testing.assert_allclose(raw.numpy(), fx['text_features'][0], atol=1e-6, rtol=0)


def test_parity_anomalyclip_fp16_deep_prompts_matter(model, text_out, manifest):
    """Without the float16 rounding the text features drift beyond the tolerance (README)."""
    backbone, head = model
    fx = np.load(ROOT / manifest['model_text']['file'])
    head.fp16_deep_prompts = False
    try:
        with torch.no_grad():
            text = head.text_features(backbone)
    finally:
        head.fp16_deep_prompts = True
    assert np.abs(text.numpy() - fx['text_features'][0]).max() > 1e-6


def test_parity_anomalyclip_pos_embed(model, manifest, encoded):
    backbone, _ = model
    fx = np.load(ROOT / manifest['model_text']['file'])
    grid = next(iter(encoded.values()))['grid']
    pos = resize_pos_embed(backbone.clip.visual.positional_embedding, grid, 'bilinear')
    np.testing.assert_allclose(pos.detach().numpy(), fx['pos_embed_interp'], atol=1e-6, rtol=0)


@pytest.mark.parametrize('name', _case_names())
def test_parity_anomalyclip_tokens(name, encoded, model):
    _, head = model
    fx, enc = np.load(ROOT / name), encoded[name]
    idx = torch.from_numpy(fx['tok_idx'])
    raw = torch.stack([enc['raw_tokens'][f][0, idx] for f in head.features]).numpy()
    np.testing.assert_allclose(raw, fx['vv_tokens_raw_sub'], **FEATS)
    sub = torch.stack([t[0, idx] for t in enc['patch_tokens']]).numpy()
    np.testing.assert_allclose(sub, fx['patch_tokens_sub'], **FEATS)
    if 'patch_tokens' in fx.files:
        np.testing.assert_allclose(torch.stack([t[0] for t in enc['patch_tokens']]).numpy(), fx['patch_tokens'],
                                   **FEATS)
    np.testing.assert_allclose(enc['image_features'].numpy(), fx['image_features_raw'], **FEATS)


@pytest.mark.parametrize('name', _case_names())
def test_parity_anomalyclip_maps_and_score(name, encoded, model, text_out):
    _, head = model
    fx = np.load(ROOT / name)
    size = fx['pixel_values'].shape[-2:]
    out = head.score(encoded[name], text_out['text'], size)
    np.testing.assert_allclose(out['text_probs'].numpy(), fx['text_probs'], **MAPS)
    np.testing.assert_allclose(out['image_scores'].numpy(), fx['image_score'], **MAPS)
    sim = torch.stack([s[0] for s in out['layer_similarity']]).numpy()
    np.testing.assert_allclose(sim, fx['layer_similarity'], **MAPS)
    if 'layer_anomaly_maps' in fx.files:
        np.testing.assert_allclose(out['layer_anomaly_maps'][:, 0].numpy(), fx['layer_anomaly_maps'], **MAPS)
    np.testing.assert_allclose(out['anomaly_map_raw'].numpy(), fx['anomaly_map_raw'], **MAPS)
    np.testing.assert_allclose(out['anomaly_map'].numpy(), fx['anomaly_map'], **MAPS)
    # The smoothing alone reproduces scipy.ndimage.gaussian_filter on the reference's own raw map.
    smoothed = gaussian_filter2d(torch.from_numpy(fx['anomaly_map_raw']), head.sigma)
    np.testing.assert_allclose(smoothed.numpy(), fx['anomaly_map'], atol=1e-6, rtol=0)


def test_parity_anomalyclip_forward(model, manifest):
    """forward() end to end on the first case equals the reference map and score."""
    backbone, head = model
    fx = np.load(ROOT / _case_names()[0])
    out = head(backbone, torch.from_numpy(fx['pixel_values']), ['ignored'])
    np.testing.assert_allclose(out['anomaly_map'].numpy(), fx['anomaly_map'], **MAPS)
    np.testing.assert_allclose(out['image_scores'].numpy(), fx['image_score'], **MAPS)


def test_parity_anomalyclip_loss_and_gradients(model, encoded, manifest):
    backbone, head = model
    spec = manifest['loss']
    fx = np.load(ROOT / spec['file'])
    assert [_case_names().index(n) for n in spec['batch']] == fx['case_files'].tolist()
    parts = [encoded[name] for name in spec['batch']]
    batch = dict(patch_tokens=[torch.cat([p['patch_tokens'][i] for p in parts]) for i in range(len(head.features))],
                 image_features=torch.cat([p['image_features'] for p in parts]), grid=parts[0]['grid'])
    assert head.lam == spec['values']['lam']
    head.zero_grad()
    out = head.loss(backbone, None, torch.from_numpy(fx['gt_masks']).float(), torch.from_numpy(fx['labels']),
                    encoded=batch)
    total = out['loss_image'] + out['loss_focal'] + out['loss_dice']
    total.backward()
    np.testing.assert_allclose(out['image_logits'].numpy(), fx['image_logits'], **FEATS)
    np.testing.assert_allclose(out['loss_image'].item(), fx['image_loss'], **LOSS)
    np.testing.assert_allclose(out['focal'].numpy(), fx['focal_per_layer'], **LOSS)
    np.testing.assert_allclose(out['dice_anomalous'].numpy(), fx['dice_anomalous_per_layer'], **LOSS)
    np.testing.assert_allclose(out['dice_normal'].numpy(), fx['dice_normal_per_layer'], **LOSS)
    np.testing.assert_allclose((out['loss_focal'] + out['loss_dice']).item(), fx['seg_loss'], **LOSS)
    np.testing.assert_allclose(total.item(), fx['total_loss'], **LOSS)
    np.testing.assert_allclose(total.item(), spec['values']['total'], **LOSS)
    learner = head.prompt_learner
    for key, param in (('grad_ctx_pos', learner.ctx_pos), ('grad_ctx_neg', learner.ctx_neg)):
        ref = fx[key]
        np.testing.assert_allclose(param.grad.numpy(), ref, atol=1e-4 * np.abs(ref).max(), rtol=1e-4, err_msg=key)
    grad = torch.stack([p.grad for p in learner.compound_prompts_text]).numpy()
    ref = fx['grad_compound_prompts_text']
    assert np.linalg.norm(grad - ref) <= 1e-4 * np.linalg.norm(ref)
    np.testing.assert_allclose(grad, ref, atol=1e-3 * np.abs(ref).max(), rtol=0)
    head.zero_grad()
