"""AnomalyCLIP parity with zqhang/AnomalyCLIP (fixtures in $OVSEG_PARITY_DIR/anomalyclip).

The model is built from the manifest's ``config`` (reduced depth, ViT-L/14@336 widths) with the
fixture's deterministic weights for every CLIP key and for the prompt learner's drawn keys (the never
used ``compound_prompt_projections`` are not part of this port). Checked: prompt strings, token ids
and embeddings, deep prompts as used (float16), text block outputs and features, the resized
positional embedding, raw and projected DPAM tokens, image features, per-layer similarities and maps,
the summed and the smoothed map, the image score, and for the manifest's loss batch every loss term
and the gradients of the learnable prompts.

Tolerances (``ovseg.testing.tolerance``): tokens of the vision tower get ``depth`` = its blocks and
``width`` = its MLP width, relative to their largest value (|x| ~ 10 for the raw DPAM tokens); the
projection adds one stage; the text tower likewise. Probabilities are softmax(cos / 0.07) over
[normal, anomalous], i.e. sigmoid(<f, t_a - t_n> / 0.07) of unit vectors: the features' relative error
on the scale |t_a - t_n| / (4 x 0.07), plus a few float32 roundings near 0.5; the per-layer maps are
such values, their sum over the layers four times them, and the Gaussian smoothing averages them.
Losses and the learnable prompts' gradients pass through the whole tower and then sum over every
pixel of the batch (``width`` = pixels). The deep-prompt gradient is also rounded to float16 per
prompt by the reference (item 2 of ``decode_heads/anomalyclip_head.py``): an entry whose float32 value lies within a
float32 error of a float16 rounding boundary rounds the other way, one float16 step (2**-10 relative to
the per-prompt gradient), so that comparison adds two float16 steps of the largest entry; its norm is
compared too.
"""
import json

import numpy as np
import pytest
import torch

from ovseg.models.anomaly.anomalyclip import gaussian_filter2d
from ovseg.models.decode_heads import AnomalyCLIPHead
from ovseg.models.anomaly.value_value_attention import resize_pos_embed
from ovseg.registry import MODELS
from ovseg.testing import EPS32, assert_close, det_state_dict_for, load_detweights, parity_dir

FOLDER = 'anomalyclip'
ROOT = parity_dir(FOLDER)
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')
EPS16 = 2.0 ** -10  # float16 spacing relative to 1


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text()) if ROOT is not None else None


def _case_names():
    man = _manifest()
    return sorted(man['cases']) if man else []


def _vision(cfg, extra=0):
    return dict(depth=cfg['vision_layers'] + extra, width=4 * cfg['vision_width'])


def _text(cfg, extra=1):
    return dict(depth=cfg['transformer_layers'] + extra, width=4 * cfg['transformer_width'])


def _probs(cfg, text, layers=1):
    """sigmoid(<f, t_a - t_n> / 0.07): the features' error on |t_a - t_n| / 0.28, times the number of
    summed layers; 16 roundings per layer near 0.5."""
    text = np.asarray(text).reshape(-1, 2, text.shape[-1])[0]
    return dict(_vision(cfg, extra=2), scale=layers * np.linalg.norm(text[1] - text[0]) / (4 * 0.07),
                atol=16 * layers * EPS32)


def _loss(cfg, pixels):
    return dict(depth=cfg['vision_layers'] + 4, width=max(4 * cfg['vision_width'], pixels))


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
    assert_close(text_out['prompts'], fx['prompts'], name='prompts')  # embeddings gathered, not computed
    deep = torch.stack(list(head.prompt_learner.compound_prompts_text)).detach()
    np.testing.assert_array_equal(deep.numpy(), fx['compound_prompts_text'])
    np.testing.assert_array_equal(deep.half().float().numpy(), fx['compound_prompts_as_used'])
    subset = fx['text_block_out_sub'].shape[2]
    blocks = torch.stack([b[:, :subset] for b in text_out['blocks']]).numpy()
    cfg = manifest['config']
    assert_close(blocks, fx['text_block_out_sub'], **_text(cfg, extra=0), name='text blocks')
    assert_close(text_out['text'], fx['text_features'][0], **_text(cfg), name='text_features')
    raw = torch.nn.functional.normalize(torch.from_numpy(fx['text_features_raw']), dim=-1)
    assert_close(raw, fx['text_features'][0], depth=2, width=raw.shape[-1], name='normalised raw text')


def test_parity_anomalyclip_fp16_deep_prompts_matter(model, text_out, manifest):
    """Without the float16 rounding the text features drift beyond the tolerance (README; ~3x here)."""
    backbone, head = model
    fx = np.load(ROOT / manifest['model_text']['file'])
    head.fp16_deep_prompts = False
    try:
        with torch.no_grad():
            text = head.text_features(backbone)
    finally:
        head.fp16_deep_prompts = True
    from ovseg.testing import tolerance_for
    assert np.abs(text.numpy() - fx['text_features'][0]).max() > tolerance_for(
        fx['text_features'][0], **_text(manifest['config']))


def test_parity_anomalyclip_pos_embed(model, manifest, encoded):
    backbone, _ = model
    fx = np.load(ROOT / manifest['model_text']['file'])
    grid = next(iter(encoded.values()))['grid']
    pos = resize_pos_embed(backbone.clip.visual.positional_embedding, grid, 'bilinear')
    assert_close(pos, fx['pos_embed_interp'], depth=1, width=4, name='pos_embed_interp')  # one bilinear step


@pytest.mark.parametrize('name', _case_names())
def test_parity_anomalyclip_tokens(name, encoded, model, manifest):
    _, head = model
    cfg = manifest['config']
    fx, enc = np.load(ROOT / name), encoded[name]
    idx = torch.from_numpy(fx['tok_idx'])
    raw = torch.stack([enc['raw_tokens'][f][0, idx] for f in head.features]).numpy()
    assert_close(raw, fx['vv_tokens_raw_sub'], **_vision(cfg), name='vv_tokens_raw')
    sub = torch.stack([t[0, idx] for t in enc['patch_tokens']]).numpy()
    assert_close(sub, fx['patch_tokens_sub'], **_vision(cfg, extra=1), name='patch_tokens_sub')
    if 'patch_tokens' in fx.files:
        assert_close(torch.stack([t[0] for t in enc['patch_tokens']]), fx['patch_tokens'], **_vision(cfg, extra=1),
                     name='patch_tokens')
    assert_close(enc['image_features'], fx['image_features_raw'], **_vision(cfg, extra=1), name='image_features')


@pytest.mark.parametrize('name', _case_names())
def test_parity_anomalyclip_maps_and_score(name, encoded, model, text_out, manifest):
    _, head = model
    cfg = manifest['config']
    fx = np.load(ROOT / name)
    size = fx['pixel_values'].shape[-2:]
    out = head.score(encoded[name], text_out['text'], size)
    one, summed = _probs(cfg, fx['text_features']), _probs(cfg, fx['text_features'], len(head.features))
    assert_close(out['text_probs'], fx['text_probs'], **one, name='text_probs')
    assert_close(out['image_scores'], fx['image_score'], **one, name='image_score')
    sim = torch.stack([s[0] for s in out['layer_similarity']]).numpy()
    assert_close(sim, fx['layer_similarity'], **one, name='layer_similarity')
    if 'layer_anomaly_maps' in fx.files:
        assert_close(out['layer_anomaly_maps'][:, 0], fx['layer_anomaly_maps'], **one, name='layer_anomaly_maps')
    assert_close(out['anomaly_map_raw'], fx['anomaly_map_raw'], **summed, name='anomaly_map_raw')
    assert_close(out['anomaly_map'], fx['anomaly_map'], **summed, name='anomaly_map')
    # The smoothing alone reproduces scipy.ndimage.gaussian_filter on the reference's own raw map:
    # two separable float32 passes over the kernel's 2 x 4 sigma + 1 taps.
    smoothed = gaussian_filter2d(torch.from_numpy(fx['anomaly_map_raw']), head.sigma)
    assert_close(smoothed, fx['anomaly_map'], depth=2, width=8 * head.sigma + 1, name='gaussian smoothing')


def test_parity_anomalyclip_forward(model, manifest):
    """forward() end to end on the first case equals the reference map and score."""
    backbone, head = model
    fx = np.load(ROOT / _case_names()[0])
    out = head(backbone, torch.from_numpy(fx['pixel_values']), ['ignored'])
    cfg = manifest['config']
    assert_close(out['anomaly_map'], fx['anomaly_map'], **_probs(cfg, fx['text_features'], len(head.features)),
                 name='anomaly_map')
    assert_close(out['image_scores'], fx['image_score'], **_probs(cfg, fx['text_features']), name='image_score')


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
    cfg = manifest['config']
    loss = _loss(cfg, int(np.prod(fx['gt_masks'].shape)))
    # Image logits: features x text / 0.07; every other term a reduction over the batch's pixels.
    assert_close(out['image_logits'], fx['image_logits'], **_vision(cfg, extra=2), scale=1 / 0.07, name='image_logits')
    for name, got, ref in (('image_loss', out['loss_image'], fx['image_loss']),
                           ('focal', out['focal'], fx['focal_per_layer']),
                           ('dice_anomalous', out['dice_anomalous'], fx['dice_anomalous_per_layer']),
                           ('dice_normal', out['dice_normal'], fx['dice_normal_per_layer']),
                           ('seg_loss', out['loss_focal'] + out['loss_dice'], fx['seg_loss']),
                           ('total_loss', total, fx['total_loss']), ('manifest total', total, spec['values']['total'])):
        assert_close(got, ref, **loss, name=name)
    learner = head.prompt_learner
    for key, param in (('grad_ctx_pos', learner.ctx_pos), ('grad_ctx_neg', learner.ctx_neg)):
        assert_close(param.grad, fx[key], **loss, name=key)
    grad = torch.stack([p.grad for p in learner.compound_prompts_text]).numpy()
    ref = fx['grad_compound_prompts_text']
    tol = assert_close(grad, ref, **loss, atol=2 * EPS16 * np.abs(ref).max(), name='grad_compound_prompts_text')
    assert np.linalg.norm(grad - ref) <= tol * np.sqrt(ref.size / 16)  # a few float16 steps, not all
    head.zero_grad()
