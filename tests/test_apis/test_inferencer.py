"""OVSegInferencer on tiny random-weight models: inputs, outputs, vocabularies, checkpoints."""
import resource

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from ovseg.apis import (CheckpointMismatchError, OVSegInferencer, inference_pipeline_cfg,
                        resize_scores, strip_weight_sources)
from ovseg.models.backbones import open_clip_loader
from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError
from ovseg.text import VocabularyError
from ovseg.utils.image_io import ImageLoadError


def _image(height=97, width=131, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _check_result(result, shape, names):
    height, width = shape
    assert result['class_names'] == names
    assert result['mask'].shape == (height, width) and result['mask'].dtype == np.int64
    assert result['logits'].shape == (len(names), height, width)
    assert result['logits'].dtype == np.float32
    np.testing.assert_allclose(result['logits'].sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(result['mask'], result['logits'].argmax(axis=0))
    assert list(result['shares']) == names
    assert sum(result['shares'].values()) == pytest.approx(1.0)
    counts = np.bincount(result['mask'].ravel(), minlength=len(names))
    assert [result['shares'][n] for n in names] == pytest.approx(counts / counts.sum())


def test_path_array_pil_inputs_at_original_size(tiny_inferencer, tmp_path):
    rgb = _image()
    path = tmp_path / 'x.png'
    Image.fromarray(rgb).save(path)
    results = [tiny_inferencer(source) for source in (path, str(path), rgb, Image.fromarray(rgb))]
    for result in results:
        _check_result(result, (97, 131), ['cat', 'dog', 'grass'])
        assert result['overlay'] is None
        np.testing.assert_allclose(result['logits'], results[0]['logits'], atol=1e-5)


def test_batches_of_mixed_sizes(tiny_inferencer):
    images = [_image(), _image(seed=1), _image(60, 50)]
    batched = tiny_inferencer(images, batch_size=2)
    assert isinstance(batched, list) and len(batched) == 3
    for image, result in zip(images, batched):
        _check_result(result, image.shape[:2], ['cat', 'dog', 'grass'])
        np.testing.assert_allclose(result['logits'], tiny_inferencer(image)['logits'], atol=1e-4)
    with pytest.raises(ValueError, match='batch_size'):
        tiny_inferencer(images, batch_size=0)


def test_call_time_vocabulary_overrides_for_one_call(tiny_inferencer):
    result = tiny_inferencer(_image(), vocabulary='sky, person|man|woman')
    _check_result(result, (97, 131), ['sky', 'person'])
    assert tiny_inferencer(_image())['class_names'] == ['cat', 'dog', 'grass']
    assert tiny_inferencer.class_names == ['cat', 'dog', 'grass']


def test_default_vocabulary_and_set_vocabulary(tiny_cfg):
    inferencer = OVSegInferencer(tiny_cfg(), vocabulary=['road', 'car'])
    assert inferencer(_image())['class_names'] == ['road', 'car']
    inferencer.set_vocabulary('voc21')
    assert inferencer(_image())['logits'].shape[0] == 21


@pytest.mark.parametrize('vocabulary,match', [
    ([], 'empty'), ('', 'empty'), (['cat', 'Cat'], 'duplicate'), ('cat, dog, cat', 'duplicate'),
    ('ade999', 'unknown vocabulary'),
])
def test_bad_vocabularies_raise(tiny_inferencer, vocabulary, match):
    with pytest.raises(VocabularyError, match=match):
        tiny_inferencer(_image(), vocabulary=vocabulary)
    assert tiny_inferencer(_image(20, 20))['class_names'] == ['cat', 'dog', 'grass']


def test_background_rule_only_from_the_config(tiny_cfg):
    plain = OVSegInferencer(tiny_cfg(), vocabulary=['background', 'cat'])
    assert plain.model.background_index is None  # an ordinary class without a configured rule
    ruled = OVSegInferencer(tiny_cfg(background=dict(thresh=0.99)),
                            vocabulary=['cat', 'background'])
    assert ruled.model.background_index == 1
    result = ruled(_image())
    assert result['shares']['background'] > 0.5  # random weights are never 99 % confident
    ruled(_image(), vocabulary=['cat', 'dog'])  # no background class: the rule is skipped
    assert ruled.model.background_index is None


def test_overlay_and_no_logits(tiny_inferencer):
    with_logits = tiny_inferencer(_image(), return_overlay=True)
    overlay = with_logits['overlay']
    assert overlay.shape == (97, 131, 3) and overlay.dtype == np.uint8
    without = tiny_inferencer(_image(), return_logits=False)
    assert without['logits'] is None
    assert (without['mask'] == with_logits['mask']).mean() > 0.999


def test_resize_scores_in_strips_matches_interpolate():
    probs = torch.rand(4, 13, 17)
    full, mask = resize_scores(probs, (101, 77))
    assert full.shape == (4, 101, 77)
    none, strip_mask = resize_scores(probs, (101, 77), return_scores=False,
                                     strip_bytes=4 * 4 * 77 * 3)  # 3 rows per strip
    assert none is None and strip_mask.dtype == np.int64
    assert (strip_mask == mask).mean() > 0.999


def test_very_large_image_stays_bounded(tiny_cfg):
    names = [f'thing {i}' for i in range(20)]
    inferencer = OVSegInferencer(tiny_cfg(short_side=128, mode='slide', vocabulary=names))
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[:, 2000:] = 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = inferencer(image, return_logits=False)
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert result['mask'].shape == (3000, 4000) and result['logits'] is None
    # Image copies and the int64 mask take ~200 MiB; one (K, H, W) float32 copy would be 915 MiB.
    assert growth_mib < 400
    with pytest.raises(ImageLoadError, match='max_pixels'):
        OVSegInferencer(tiny_cfg(), max_pixels=10_000_000)(image)


def test_config_kinds(tiny_cfg, write_config):
    cfg = tiny_cfg()
    from_file = OVSegInferencer(write_config(cfg))
    from_config = OVSegInferencer(Config(cfg))
    model_only = OVSegInferencer(cfg['model'], cfg_options={'model.vocabulary': ['a', 'b']})
    assert from_file.class_names == from_config.class_names == ['cat', 'dog', 'grass']
    assert model_only.class_names == ['a', 'b']
    assert model_only.pipeline[1].scale == (2048, 448)
    with pytest.raises(FileNotFoundError, match='nope.py'):
        OVSegInferencer('nope.py')


def test_inference_pipeline_replaces_file_loaders(tiny_cfg):
    types = [t['type'] for t in inference_pipeline_cfg(Config(tiny_cfg()))]
    assert types == ['LoadImageFromNDArray', 'Resize', 'PackSegInputs']


def test_checkpoints(tiny_cfg, tiny_inferencer, tmp_path):
    image = _image()
    state = tiny_inferencer.model.state_dict()
    full = tmp_path / 'full.pth'
    torch.save(state, full)
    restored = OVSegInferencer(tiny_cfg(), checkpoint=str(full))
    expected = tiny_inferencer(image)['logits']
    np.testing.assert_allclose(restored(image)['logits'], expected, atol=1e-5)
    clip_only = tmp_path / 'clip.pth'
    torch.save(tiny_inferencer.model.backbone.clip.state_dict(), clip_only)
    routed = OVSegInferencer(tiny_cfg(), checkpoint=str(clip_only))
    np.testing.assert_allclose(routed(image)['logits'], expected, atol=1e-5)
    bad = dict(state)
    bad['head.extra_weight'] = bad.pop('backbone.clip.logit_scale')
    torch.save(bad, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        OVSegInferencer(tiny_cfg(), checkpoint=str(tmp_path / 'bad.pth'))
    assert 'backbone.clip.logit_scale' in str(info.value) and 'head.extra_weight' in str(info.value)
    with pytest.raises(ValueError, match='exclude'):
        OVSegInferencer(tiny_cfg(), checkpoint=str(full), random_weights=True)


def _pretrained_cfg(tiny_cfg, cache_dir):
    cfg = tiny_cfg()
    cfg['model']['backbone'] = dict(type='OpenCLIPBackbone', model_name='ViT-B-16',
                                    pretrained='openai', cache_dir=str(cache_dir))
    return cfg


def test_missing_weights_raise_one_sentence(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(open_clip_loader, '_hub_reachable', lambda *args, **kwargs: False)
    with pytest.raises(WeightsUnavailableError, match='not in the local cache'):
        OVSegInferencer(_pretrained_cfg(tiny_cfg, tmp_path))


def test_strip_weight_sources_keeps_quick_gelu(tiny_cfg, tmp_path):
    model = _pretrained_cfg(tiny_cfg, tmp_path)['model']
    model['refiner'] = dict(type='X', checkpoint='r.pth',
                            init_cfg=dict(type='Pretrained', checkpoint='c'))
    removed = strip_weight_sources(model)
    assert sorted(removed) == ['model.backbone.pretrained', 'model.refiner.checkpoint',
                               'model.refiner.init_cfg']
    assert model['backbone']['model_name'] == 'ViT-B-16-quickgelu'  # OpenAI weights use QuickGELU
    assert model['text_classifier']['cache_dir'] is None


def test_unavailable_cuda_is_a_clear_error(tiny_cfg):
    if torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    with pytest.raises(RuntimeError, match='CUDA is not available'):
        OVSegInferencer(tiny_cfg(), device='cuda')


def test_precision_option(tiny_cfg):
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    fp32 = OVSegInferencer(tiny_cfg())
    bf16 = OVSegInferencer(tiny_cfg(), precision='bf16')
    bf16.model.load_state_dict(fp32.model.state_dict())
    assert bf16.model.precision == 'bf16' and fp32.model.precision == 'fp32'
    a, b = fp32(image), bf16(image)
    assert b['logits'].dtype == np.float32
    assert np.abs(a['logits'] - b['logits']).max() < 0.05
    with pytest.raises(ValueError, match='precision'):
        OVSegInferencer(tiny_cfg(), precision='half')
