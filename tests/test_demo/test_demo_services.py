"""The web demo's request functions, model pool and command line on tiny models (no server)."""
import re
import time

import numpy as np
import pytest
from PIL import Image

from demo.app.anomaly import AnomalyUnavailable, check_anomaly_config, draw_heat_map
from demo.app.limits import DemoInputError, InputLimits
from demo.app.models import REPO_ROOT, ModelPool, ModelSpec, label_for_config, resolve_model
from demo.app.services import DemoServices


def test_segment_text(services, demo_files):
    calls = []
    overlay, table, status = services.segment_text(
        str(demo_files['image']), 'cat, dog|puppy, <b>grass</b>',
        progress=lambda *a, **k: calls.append(k.get('desc')))
    assert overlay.shape == (96, 128, 3) and overlay.dtype == np.uint8
    assert 'id="ovseg-shares"' in table and '&lt;b&gt;grass&lt;/b&gt;' in table
    assert '<b>grass' not in table  # typed names are escaped
    percents = [float(v) for v in __import__('re').findall(r'>([\d.]+)%<', table)]
    assert len(percents) == 3 and sum(percents) == pytest.approx(100.0, abs=0.2)
    assert status.startswith('**tiny_segmentor** · 128x96 px') and 'Random weights' in status
    assert 'Segmenting' in calls


def test_model_is_built_once_and_unknown_labels_refused(services, demo_files):
    pool = services.pool
    first = pool.get()
    services.segment_text(str(demo_files['image']), 'a, b')
    assert pool.get('tiny_segmentor') is first
    with pytest.raises(KeyError, match="Unknown model 'configs/evil.py'"):
        services.segment_text(str(demo_files['image']), 'a, b', model='configs/evil.py')


def test_text_refusals(services, demo_files):
    with pytest.raises(DemoInputError, match='vocabulary is empty'):
        services.segment_text(str(demo_files['image']), ' , ')
    with pytest.raises(DemoInputError, match='not an image'):
        services.segment_text(str(demo_files['text']), 'cat')
    with pytest.raises(DemoInputError, match='too large'):
        services.segment_text(str(demo_files['huge']), 'cat')
    with pytest.raises(ValueError, match='dog'):  # duplicate synonym: ovseg's VocabularyError
        services.segment_text(str(demo_files['image']), 'dog, dog')


def test_click_mode(services, demo_files):
    image = str(demo_files['image'])
    text, preview = services.add_click(image, '', 'positive point', 40, 30)
    assert text == '+40,30' and preview.shape == (96, 128, 3)
    text, _ = services.add_click(image, text, 'box corner', 60, 10)
    text, _ = services.add_click(image, text, 'box corner', 120, 90)
    assert text == '+40,30; box 60,10,120,90'
    overlay, table, status = services.segment_prompts(image, 'cat, dog', text)
    assert overlay.shape == (96, 128, 3)
    assert table.count('<tr>') == 3 and '#1' in table and '#2' in table  # header + 2 objects
    assert '2 object(s) from 1 point(s), 1 box(es)' in status
    with pytest.raises(DemoInputError, match='positive point'):
        services.segment_prompts(image, 'cat', '-5,5')
    with pytest.raises(DemoInputError, match='outside'):
        services.segment_prompts(image, 'cat', '+500,5')


def test_clicks_on_the_downscaled_preview_map_back(demo_files):
    pool = ModelPool([ModelSpec('stub', 'unused.py')], builder=lambda spec: object())
    services = DemoServices(pool, InputLimits(max_side=500))
    text, preview = services.add_click(str(demo_files['large']), '', 'negative point', 100, 50,
                                       on_preview=True)
    assert text == '-400,200' and preview.shape == (375, 500, 3)
    clamped, _ = services.add_click(str(demo_files['large']), '', 'positive point', 9999, -3)
    assert clamped == '+2000,0'


def test_unavailable_modes_say_why(demo_files):
    pool = ModelPool([ModelSpec('stub', 'unused.py')], builder=lambda spec: object())
    services = DemoServices(pool, sam_reason='start with --sam-checkpoint',
                            anomaly_reason='no WinCLIP')
    assert not services.click_available and not services.anomaly_available
    with pytest.raises(DemoInputError, match='--sam-checkpoint'):
        services.segment_prompts(str(demo_files['image']), 'cat', '+1,1')
    with pytest.raises(AnomalyUnavailable, match='no WinCLIP'):
        services.detect_anomaly(str(demo_files['image']), 'cup')


def test_anomaly_mode(services, demo_files):
    heat, table, status = services.detect_anomaly(str(demo_files['image']), ' bottle ')
    assert heat.shape[0] == 96 and heat.shape[1] > 128 and heat.dtype == np.uint8  # + colour bar
    assert 'image score' in table and status.startswith('**Anomaly: bottle**') and 'zero-shot' in status
    with pytest.raises(DemoInputError, match="object's name"):
        services.detect_anomaly(str(demo_files['image']), '')


def test_anomaly_mode_few_shot_request(services, demo_files, tmp_path):
    """Normal reference uploads make the few-shot model compare with them: the image that is its own
    reference scores lower than without references (its few-shot map is zero)."""
    image = str(demo_files['image'])
    _, zero_table, _ = services.detect_anomaly(image, 'bottle')
    other = tmp_path / 'other.png'
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(other)
    heat, table, status = services.detect_anomaly(image, 'bottle', [image, str(other)])
    assert heat.shape[0] == 96 and '2-shot' in status and 'image score' in table
    score = float(re.search(r'image score</td><td[^>]*>([0-9.]+)<', table).group(1))
    zero = float(re.search(r'image score</td><td[^>]*>([0-9.]+)<', zero_table).group(1))
    assert score < zero
    with pytest.raises(DemoInputError, match='limit is 8'):
        services.detect_anomaly(image, 'bottle', [image] * 9)
    with pytest.raises(DemoInputError, match='not an image'):
        services.detect_anomaly(image, 'bottle', [str(demo_files['text'])])


def test_heat_map_uses_the_absolute_scale():
    rgb = np.zeros((50, 40, 3), np.uint8)
    low = draw_heat_map(rgb, np.zeros((50, 40)), alpha=1.0)
    high = draw_heat_map(rgb, np.ones((50, 40)), alpha=1.0)
    assert low[25, 20, 2] > 100 and high[25, 20, 0] > 100  # 0 blue, 1 red, not per-image stretched


def test_anomaly_configs_checked():
    musc = REPO_ROOT / 'configs' / 'anomaly' / 'musc_vit-l14-336_mvtec.py'
    if musc.is_file():
        with pytest.raises(AnomalyUnavailable, match='MuScHead, which scores a whole category'):
            check_anomaly_config(musc)
    with pytest.raises(AnomalyUnavailable, match='not found'):
        check_anomaly_config('missing.py')


def test_pool_keeps_the_most_recent_models():
    built = []
    specs = [ModelSpec(name, f'{name}.py') for name in 'abc']
    pool = ModelPool(specs, max_loaded=2,
                     builder=lambda spec: built.append(spec.label) or spec.label)
    assert [pool.get(x) for x in 'abaca'] == list('abaca')
    assert built == ['a', 'b', 'c']  # 'a' stayed (recently used); 'b' was dropped for 'c'
    pool.get('b')
    assert built == ['a', 'b', 'c', 'b'] and not pool.is_loaded('c') and pool.default_label == 'a'
    with pytest.raises(ValueError, match='unique'):
        ModelPool([ModelSpec('a', 'x.py'), ModelSpec('a', 'y.py')])


def test_resolve_model_presets_and_paths(tmp_path):
    spec = resolve_model('maskclip')
    assert spec.label == 'MaskCLIP ViT-B/16' and spec.config.endswith('maskclip_vit-b16_ade150.py')
    assert label_for_config(spec.config) == 'MaskCLIP ViT-B/16'
    with pytest.raises(ValueError, match='needs its trained checkpoint.*clip_dinoiser_to_ovseg'):
        resolve_model('clip-dinoiser')
    assert resolve_model('clip-dinoiser', random_weights=True).checkpoint is None
    with pytest.raises(ValueError, match='needs SAM weights: add --sam-checkpoint'):
        resolve_model('sam-refined')
    sam = resolve_model('sam-refined', sam_checkpoint='sam.pth')
    assert sam.cfg_options == {'model.sam_refiner.sam.checkpoint': 'sam.pth'}
    with pytest.raises(ValueError, match='neither a preset .*maskclip.* nor an existing config'):
        resolve_model('nonsense')
    config = tmp_path / 'mine.py'
    config.write_text('model = dict(type="OVSegmentor")\n')
    assert resolve_model(str(config), 'w.pth') == ModelSpec('mine', str(config), 'w.pth')


def test_cli_exit_codes(gradio_app_module, demo_files, tmp_path, monkeypatch, capsys):
    from ovseg.models.backbones import open_clip_loader
    monkeypatch.setattr(open_clip_loader, '_hub_reachable', lambda *args, **kwargs: False)
    config = tmp_path / 'pretrained.py'
    config.write_text(demo_files['segmentor'].read_text() + (
        "model['backbone'] = dict(type='OpenCLIPBackbone', model_name='ViT-B-16', "
        f"pretrained='openai', cache_dir={str(tmp_path / 'empty')!r})\n"))
    start = time.monotonic()
    assert gradio_app_module.main(['--config', str(config), '--port', '1']) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert 'cannot be downloaded' in err and '--random-weights' in err
    assert gradio_app_module.main(['--model', 'clip-dinoiser']) == 1
    assert 'needs its trained checkpoint' in capsys.readouterr().err
    assert gradio_app_module.main(['--checkpoint', 'x.pth', '--model', 'maskclip']) == 1
    argv = app_argv_with(demo_files, ['--sam-checkpoint', 'missing.pth'])
    assert gradio_app_module.main(argv) == 1
    assert 'no such file' in capsys.readouterr().err


def app_argv_with(files, extra):
    from demo_test_utils import app_argv
    return [a for a in app_argv(files, extra=extra) if a != '--random-weights']
