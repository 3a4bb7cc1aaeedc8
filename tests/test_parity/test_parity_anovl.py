"""AnoVL parity with hq-deng/AnoVL (fixtures in $OVSEG_PARITY_DIR/anovl) and AnoVL unit checks.

Every case of the folder's ``manifest.json`` is checked: domain-aware prompt lists, text features,
per-layer V-V / original-path tokens (and the reference's aliased token list), projected tokens,
cosines, probabilities, pooled and upsampled maps, and the class-token probabilities of the views.
The 22-view image score needs 21 more passes of the vision tower per case (about a minute on two CPU
cores), so the full check is marked slow; the fast tests check view 0 of every case and one view of
each augmentation kind on the first case.

Tolerances (``ovseg.testing.tolerance``): the vision tower is ``L`` float32 blocks whose longest
reduction is the MLP (4 x width), so tokens get ``depth=L, width=4*width`` relative to their largest
value (|x| ~ 3 here: 2e-4; a newer torch moved one token by 1e-5); the projection adds one stage. Cosines
of unit vectors carry that relative error on the scale 1. The anomalous probability is
sigmoid(<f, t_a - t_n>) of a unit token f (no temperature), so the tokens' relative error reaches it on
the scale |t_a - t_n| / 4, plus a few float32 roundings of values near 0.5 (``_probs``: ~3e-6 here); the
pooled and upsampled maps and the view probabilities are means of such values. Text features: the text
tower's depth plus the projection. ``test_parity_anovl_tolerance_catches_defects`` shows two real
mistakes more than 10x outside these bounds.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ovseg.models.anomaly.anovl import AnoVLStatePrompts
from ovseg.models.decode_heads import AnoVLHead
from ovseg.models.anomaly.anovl_views import NUM_VIEWS, anovl_views
from ovseg.registry import MODELS
from ovseg.testing import (CLIP_MEAN_255, CLIP_STD_255, EPS32, assert_close, det_state_dict_for, load_tool, parity_dir,
                           tiny_clip_arch, tolerance_for)
from ovseg.text.anovl_prompts import (ANOVL_ANOMALOUS_STATES, ANOVL_CLASS_ALIASES, ANOVL_NORMAL_STATES,
                                      ANOVL_TEXTURES, anovl_prompts, family_templates)

FOLDER = 'anovl'
ROOT_REPO = Path(__file__).resolve().parents[2]
ROOT = parity_dir(FOLDER)
needs_fixtures = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                          f'to a folder holding {FOLDER}/')
FAMILY_KEYS = dict(industrial_photo='inds_temp', industrial_image='img_temp', manufacturing_image='mnf_temp',
                   textural_photo='text_temp', surface_picture='surf_temp')
VIEW_SAMPLE = (1, 9, 17, 18, 19)  # one rotation, translation, flip, grey and 90-degree rotation


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text()) if ROOT is not None else None


def _case_names():
    man = _manifest()
    return sorted(man['cases']) if man else []


def _tower(manifest, extra=0, **kw):
    """Float32 error model of the vision tower (+ ``extra`` stages after it)."""
    vision = manifest['open_clip_config']['vision_cfg']
    return dict(depth=vision['layers'] + extra, width=4 * vision['width'], **kw)


def _cosines(manifest):
    """Cosines of unit vectors: the normalised tokens' relative error on the scale 1."""
    return _tower(manifest, extra=2, scale=1.0)


def _probs(manifest, fx):
    """p = sigmoid(<f, t_a - t_n>) for a unit token f: the tokens' relative error on the scale
    |t_a - t_n| / 4 (the sigmoid's slope), plus 16 float32 roundings of values near 0.5 (cosines,
    softmax, the 3 x 3 mean, the bilinear weights)."""
    text = fx['text_features']
    return _tower(manifest, extra=2, scale=np.linalg.norm(text[:, 1] - text[:, 0]) / 4, atol=16 * EPS32)


def _text(manifest):
    text = manifest['open_clip_config']['text_cfg']
    return dict(depth=text['layers'] + 1, width=4 * text['width'])


@pytest.fixture(scope='module')
def manifest():
    return _manifest()


@pytest.fixture(scope='module')
def model(manifest):
    """ViT backbone with the fixture's deterministic weights and a default AnoVL head."""
    backbone = MODELS.build(dict(type='OpenCLIPBackbone', arch=manifest['open_clip_config']))
    state = det_state_dict_for(backbone.clip, manifest['seed'], root=ROOT.parent)
    assert {k: list(v.shape) for k, v in state.items()} == manifest['det_weights']
    backbone.clip.load_state_dict(state, strict=False)
    return backbone.eval(), AnoVLHead()


@pytest.fixture(scope='module', params=_case_names())
def case(request, model, manifest):
    """One case: the fixture arrays and this port's outputs for its input."""
    backbone, head = model
    meta = manifest['cases'][request.param]
    fx = np.load(ROOT / request.param)
    images = torch.from_numpy(fx['pixel_values'])
    text = head.text_features(backbone, [meta['class_name']])
    encoded = head.encode_tokens(backbone, images, taps=manifest['features_list'], record_mid=True)
    scored = head.score_tokens(encoded['tokens'], text, images.shape[-2:])
    return dict(name=request.param, meta=meta, fx=fx, images=images, text=text, encoded=encoded, scored=scored)


def _aliased_token_list(encoded, taps):
    """The reference's returned [vv, ori] per tap after its in-place updates (see anovl.py docstring)."""
    last = max(encoded['ori'])
    vv = encoded['vv'][last].clone()
    vv[:, 0] = encoded['last_ori'][:, 0]  # its final `x[0] = x_ori[0]` writes into the shared V-V tensor
    out = []
    for tap in taps:
        out += [vv, encoded['mid'][tap + 1] if tap < last else encoded['ori'][tap]]
    return out


@needs_fixtures
def test_parity_anovl_prompt_lists(manifest):
    prompts = manifest['prompts']
    assert list(ANOVL_NORMAL_STATES) == prompts['state_normal']
    assert list(ANOVL_ANOMALOUS_STATES) == prompts['state_anomaly']
    assert list(ANOVL_TEXTURES) == prompts['texture_list']
    assert dict(ANOVL_CLASS_ALIASES) == prompts['class_mapping']
    for family, key in FAMILY_KEYS.items():
        assert list(family_templates(family)) == prompts[key], family
    for meta in manifest['cases'].values():
        normal, anomalous = anovl_prompts(meta['class_name'])
        assert len(normal) == len(anomalous) == meta['n_templates'] * len(ANOVL_NORMAL_STATES)
        families = ('inds_temp', 'text_temp', 'surf_temp') if meta['texture'] else ('inds_temp', 'img_temp',
                                                                                    'mnf_temp')
        first = prompts[families[0]][0]
        assert normal[:2] == [first.format(s.format(meta['class_name'])) for s in ANOVL_NORMAL_STATES[:2]]


@needs_fixtures
def test_parity_anovl_preprocessing(case):
    """SegDataPreProcessor with the configs' CLIP mean/std turns the resized image into the model input."""
    pre = MODELS.build(dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255, bgr_to_rgb=False))
    image = torch.from_numpy(case['fx']['image_uint8']).permute(2, 0, 1).contiguous()
    out = pre(dict(inputs=[image], data_samples=None))['inputs']
    # (x - 255 mean) / (255 std) vs the reference's (x / 255 - mean) / std: a few roundings of |x| <= 2.7.
    assert_close(out, case['fx']['pixel_values'], depth=4, name='pixel_values')


def raw_fixture_image(meta):
    """The case's scikit-image source image (RGB uint8), or a skip when it differs from the fixture's."""
    import hashlib
    import re

    import skimage.data
    name = re.fullmatch(r'skimage\.data\.(\w+)\(\)', meta['image'])
    if name is None:
        pytest.skip(f"unknown image source {meta['image']!r}")
    raw = getattr(skimage.data, name.group(1))()
    if raw.ndim == 2 and len(meta['raw_shape']) == 3:
        raw = np.repeat(raw[..., None], 3, axis=-1)  # grey images were stacked to RGB by the reference run
    if hashlib.sha256(np.ascontiguousarray(raw).tobytes()).hexdigest() != meta['raw_sha256']:
        pytest.skip(f"this scikit-image's {name.group(1)}() differs from the fixture's")
    return raw


@needs_fixtures
@pytest.mark.parametrize('name', _case_names())
def test_parity_anovl_resize(name, manifest):
    """The configs' resize (mmcv Resize, PIL bilinear) reproduces the reference's torchvision resize."""
    import mmcv
    expected = np.load(ROOT / name)['image_uint8']
    resized = mmcv.imresize(raw_fixture_image(manifest['cases'][name]), expected.shape[1::-1],
                            interpolation='bilinear', backend='pillow')
    np.testing.assert_array_equal(resized, expected)


@needs_fixtures
def test_parity_anovl_text_features(case, manifest):
    assert_close(case['text'][0], case['fx']['text_features'], **_text(manifest), name='text_features')


@needs_fixtures
def test_parity_anovl_tokens(case, manifest):
    fx, enc, taps = case['fx'], case['encoded'], manifest['features_list']
    idx = torch.from_numpy(fx['tok_sub'])
    vv = torch.stack([enc['vv'][t][0, idx] for t in taps]).numpy()
    ori = torch.stack([enc['ori'][t][0, idx] for t in taps]).numpy()
    assert_close(vv, fx['vv_tokens_sub'], **_tower(manifest), name='vv_tokens')
    assert_close(ori, fx['ori_tokens_sub'], **_tower(manifest), name='ori_tokens')
    aliased = torch.stack([t[0, idx] for t in _aliased_token_list(enc, taps)]).numpy()
    assert_close(aliased, fx['ref_patch_tokens_sub'], **_tower(manifest), name='ref_patch_tokens')
    # The map uses the reference's entry `used_patch_token_index` (the last V-V tokens) minus the class token.
    used = _aliased_token_list(enc, taps)[manifest['used_patch_token_index']]
    torch.testing.assert_close(used[:, 1:], enc['vv'][max(taps)][:, 1:], rtol=0, atol=0)


@needs_fixtures
def test_parity_anovl_maps(case, manifest):
    fx, scored = case['fx'], case['scored']
    assert_close(case['encoded']['tokens'], fx['vv12_proj'], **_tower(manifest, extra=1), name='vv12_proj')
    assert_close(scored['cos'], fx['cos'], **_cosines(manifest), name='cos')
    for key in ('prob_anomalous', 'prob_pooled', 'anomaly_map'):
        assert_close(scored[key], fx[key], **_probs(manifest, fx), name=key)


@needs_fixtures
def test_parity_anovl_tolerance_catches_defects(case, model, manifest):
    """Two plausible mistakes lie far (> 10x) outside the tolerances: the other domain's template
    family (object templates for a texture and vice versa), and maps upsampled with
    ``align_corners=False``."""
    backbone, _ = model
    fx, name = case['fx'], case['meta']['class_name']
    flipped = () if case['meta']['texture'] else (name,)
    wrong_text = AnoVLHead(prompts=dict(type='AnoVLStatePrompts', textures=flipped)).text_features(backbone, [name])
    pooled = case['scored']['prob_pooled']
    wrong_map = torch.nn.functional.interpolate(pooled, size=case['images'].shape[-2:], mode='bilinear',
                                                align_corners=False)[:, 0]
    for wrong, expected, tol in ((wrong_text[0], fx['text_features'], _text(manifest)),
                                 (wrong_map, fx['anomaly_map'], _probs(manifest, fx))):
        assert np.abs(wrong.numpy() - expected).max() > 10 * tolerance_for(expected, **tol)


@needs_fixtures
def test_parity_anovl_unaugmented_view(case, model, manifest):
    """View 0 (the image itself): the class token of the original path, reused from the map pass."""
    _, head = model
    probs, _ = head.state_probs(case['encoded']['cls_ori'][:, None], case['text'])
    assert_close(probs[0, 0], case['fx']['aug_cls_probs'][0], **_probs(manifest, case['fx']), name='view0')


@needs_fixtures
def test_parity_anovl_augmented_view_kinds(model, manifest):
    """One view of every augmentation kind, first case only (the full set is the slow test)."""
    backbone, head = model
    name = _case_names()[0]
    fx = np.load(ROOT / name)
    views = anovl_views(torch.from_numpy(fx['pixel_values']))[0, list(VIEW_SAMPLE)]
    assert anovl_views(torch.zeros(1, 3, 8, 8)).shape[1] == NUM_VIEWS == fx['aug_cls_probs'].shape[0]
    text = head.text_features(backbone, [manifest['cases'][name]['class_name']])
    probs, _ = head.state_probs(head.class_tokens(backbone, views)[None], text)
    assert_close(probs[0], fx['aug_cls_probs'][list(VIEW_SAMPLE)], **_probs(manifest, fx), name='view_probs')


@pytest.mark.slow
@needs_fixtures
def test_parity_anovl_image_score_all_views(case, model, manifest):
    backbone, head = model
    out = head.image_scores(backbone, case['images'], case['text'], case['encoded']['cls_ori'])
    tol = _probs(manifest, case['fx'])
    assert_close(out['view_probs'][0], case['fx']['aug_cls_probs'], **tol, name='view_probs')
    assert_close(out['image_scores'][0], case['fx']['image_score'], **tol, name='image_score')
    assert_close(out['image_scores'][:1], [case['meta']['image_score']], **tol, name='manifest score')


@needs_fixtures
def test_parity_anovl_forward_matches_parts(model, manifest):
    """forward() (views off, first case) returns the reference map and the view-0 score."""
    backbone, head = model
    name = _case_names()[0]
    fx = np.load(ROOT / name)
    plain = AnoVLHead(prompts=head.prompts, augment_views=False)  # shares the cached text features
    out = plain(backbone, torch.from_numpy(fx['pixel_values']), [manifest['cases'][name]['class_name']])
    assert_close(out['anomaly_map'], fx['anomaly_map'], **_probs(manifest, fx), name='anomaly_map')
    assert_close(out['image_scores'][:1], fx['aug_cls_probs'][:1, 1], **_probs(manifest, fx), name='image_score')


def test_anovl_prompts_domains_and_aliases():
    obj_normal, obj_anomalous = anovl_prompts('bottle')
    tex_normal, _ = anovl_prompts('carpet')
    assert len(obj_normal) == len(obj_anomalous) == 462
    assert obj_normal[0] == 'a cropped industrial photo of the normal bottle'
    assert obj_normal[7] == 'a cropped industrial photo of a normal bottle'  # template-major
    assert 'a textural photo of a flawless carpet' in tex_normal
    assert not any('manufacturing' in s for s in tex_normal)
    assert anovl_prompts('macaroni1')[1][0] == 'a cropped industrial photo of the damaged macaroni'


@pytest.fixture(scope='module')
def tiny_backbone():
    torch.manual_seed(0)
    return MODELS.build(dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit'))).eval()


def test_anovl_head_shapes_views_and_adapter(tiny_backbone):
    images = torch.randn(2, 3, 64, 64)
    head = AnoVLHead(prompts=dict(type='AnoVLStatePrompts', batch_size=512))
    out = head(tiny_backbone, images, ['bottle', 'carpet'])
    assert out['anomaly_map'].shape == (2, 64, 64) and out['view_probs'].shape == (2, NUM_VIEWS, 2)
    assert torch.all((out['image_scores'] > 0) & (out['image_scores'] < 1))
    # Views of a batch are the views of each image.
    single = head(tiny_backbone, images[1:], ['carpet'])
    torch.testing.assert_close(single['image_scores'], out['image_scores'][1:], atol=1e-6, rtol=0)
    adapter = dict(type='AnoVLTestTimeAdapter', steps=3, seed=1)
    adapted = AnoVLHead(prompts=head.prompts, augment_views=False, adapter=adapter)
    first = adapted(tiny_backbone, images, ['bottle', 'carpet'])['anomaly_map']
    again = adapted(tiny_backbone, images, ['bottle', 'carpet'])['anomaly_map']
    torch.testing.assert_close(first, again, rtol=0, atol=0)  # seeded per image: order-independent
    assert not torch.allclose(first, out['anomaly_map'])
    assert head.prompts.sentence_embeddings(tiny_backbone, 'bottle').shape == (924, 32)


def test_anovl_adapter_lowers_its_loss():
    """The adapter's own objective decreases over its steps (pseudo-normal clean, pseudo-anomalous noisy)."""
    from ovseg.models.anomaly.anovl_adapter import AnoVLTestTimeAdapter
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 4, 16, generator=gen)
    text = torch.nn.functional.normalize(torch.randn(16, 2, generator=gen), dim=0)
    sentences = torch.nn.functional.normalize(torch.randn(10, 16, generator=gen), dim=-1)
    losses = []
    for steps in (0, 20):
        adapter = AnoVLTestTimeAdapter(steps=steps, lr=1e-2, noise_std=0.5, seed=0)
        adapted = adapter(tokens, text, sentences)
        probs = (torch.nn.functional.normalize(adapted, dim=-1) @ text).softmax(-1)
        losses.append(float(-(probs * probs.log()).sum(-1).mean()))  # entropy of the clean image
    assert losses[1] < losses[0]


def test_anovl_state_prompts_registered():
    assert isinstance(MODELS.build(dict(type='AnoVLStatePrompts')), AnoVLStatePrompts)


def test_anovl_config_on_generated_mvtec(tmp_path):
    """The shipped test-time-adapter config runs through tools/test.py (tiny CLIP, generated data)."""

    from ovseg.datasets.anomaly import make_mvtec_like
    from ovseg.evaluation.anomaly import METRIC_NAMES
    repo = ROOT_REPO
    categories = ('brick', 'grass')
    make_mvtec_like(str(tmp_path / 'data'), categories, num_good=2, num_defect=2, size=96, seed=0)
    lines = [f"_base_ = [{str(repo / 'configs/anomaly/anovl_vit-b16-plus-240_tta_mvtec.py')!r}]",
             'test_pipeline = [',
             "    dict(type='LoadImageFromFile'),",
             "    dict(type='Resize', scale=(64, 64), keep_ratio=False, interpolation='bilinear', backend='pillow'),",
             "    dict(type='LoadAnomalyMask'),",
             "    dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}})]",
             f"model = dict(backbone=dict(_delete_=True, type='OpenCLIPBackbone', arch={tiny_clip_arch('vit')!r}),",
             "             head=dict(adapter=dict(steps=2)))",
             'test_dataloader = dict(num_workers=0, persistent_workers=False,',
             f"                       dataset=dict(data_root={str(tmp_path / 'data')!r}, pipeline=test_pipeline))",
             'test_evaluator = dict(eval_size=(64, 64))',
             'default_hooks = dict(logger=dict(interval=1))']
    config = tmp_path / 'tiny_anovl.py'
    config.write_text('\n'.join(lines) + '\n')
    tool = load_tool('test.py')
    metrics = tool.main([str(config), '--work-dir', str(tmp_path / 'work')])
    for name in METRIC_NAMES:
        per_category = [metrics[f'{c}/{name}'] for c in categories]
        assert np.isfinite(per_category).all() and metrics[name] == pytest.approx(np.mean(per_category)), name


def test_dual_path_transformer_paths(tiny_backbone):
    """The plain path equals open_clip's tower; V-V taps of plain blocks are their outputs; softmax guard."""
    from ovseg.models.anomaly.value_value_attention import dual_path_transformer, embed_tokens, plain_softmax
    visual = tiny_backbone.clip.visual
    with torch.no_grad():
        tokens, grid = embed_tokens(visual, torch.randn(2, 3, 64, 64))
        reference = visual.transformer(tokens)
        dual = dual_path_transformer(visual, tokens, num_dual=2, taps=(1, 2), use_plain_softmax=True)
        plain = dual_path_transformer(visual, tokens, num_dual=0, taps=(2,))
    assert grid == (4, 4)
    torch.testing.assert_close(dual['last_ori'], reference, atol=1e-5, rtol=1e-5)
    assert plain['last_vv'] is None
    torch.testing.assert_close(plain['vv'][2], reference, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(dual['vv'][2], dual['ori'][2])
    with pytest.raises(ValueError, match='outside'):
        dual_path_transformer(visual, tokens, num_dual=1, taps=(3,))
    logits = torch.tensor([[1000.0, 0.0], [1.0, 2.0]])
    torch.testing.assert_close(plain_softmax(logits), logits.softmax(-1))
