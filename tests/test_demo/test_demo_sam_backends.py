"""The demo offers the SAM backends: segment-anything or SAM 2 for clicks/boxes, SAM 2 / SAM 3 presets."""
import numpy as np
import pytest

from demo.app.models import resolve_model
from demo.app.services import DemoServices
from ovseg.models.backbones import WeightsUnavailableError
from ovseg.models.proposals import SAM2Predictor, SAMPredictor, hf_weights

pytest.importorskip('transformers')


def test_presets_name_the_sam2_and_sam3_configs():
    sam3 = resolve_model('sam3')
    assert sam3.config.endswith('configs/sam3/sam3_ade150.py') and sam3.label == 'SAM 3 (text prompts)'
    sam2 = resolve_model('sam2-refined', sam2_model='/data/sam2.1-hiera-large')
    assert sam2.config.endswith('configs/sam2_clip/maskclip_vit-b16_samrefine-sam2-hiera-l_ade150.py')
    assert sam2.cfg_options == {'model.sam_refiner.sam.pretrained': '/data/sam2.1-hiera-large'}


def test_click_mode_backend_is_chosen_on_the_command_line(gradio_app_module, monkeypatch):
    args = gradio_app_module.parse_args(['--random-weights', '--sam-arch', 'tiny', '--sam-image-size', '256'])
    assert args.sam_backend == 'segment-anything' and args.sam2_model == 'facebook/sam2.1-hiera-large'
    factory, _ = gradio_app_module.sam_factory(args)
    assert isinstance(factory(), SAMPredictor)
    args = gradio_app_module.parse_args(['--random-weights', '--sam-backend', 'sam2', '--sam2-arch', 'tiny'])
    factory, reason = gradio_app_module.sam_factory(args)
    sam2 = factory()
    assert isinstance(sam2, SAM2Predictor) and reason == ''
    # offline without cached SAM 2 weights: the one-sentence error, before the server starts
    monkeypatch.setattr(hf_weights, 'hub_reachable', lambda timeout=3.0: False)
    args = gradio_app_module.parse_args(['--sam-backend', 'sam2', '--sam2-model', 'ovseg-tests/no-such-sam2'])
    with pytest.raises(WeightsUnavailableError, match='cannot be downloaded'):
        gradio_app_module.sam_factory(args)


def test_sam2_clicks_through_the_services(gradio_app_module, demo_files):
    services = gradio_app_module.build_services(gradio_app_module.parse_args(
        ['--config', str(demo_files['segmentor']), '--random-weights', '--sam-backend', 'sam2',
         '--sam2-arch', 'tiny', '--anomaly-config', 'none', '--no-examples']))
    assert isinstance(services, DemoServices) and services.click_available
    sam = services._get_sam()
    assert isinstance(sam, SAM2Predictor)
    inferencer = services.pool.get()
    inferencer.set_sam(sam)
    image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    out = inferencer.prompt(image, points=[[10, 20]], vocabulary=['cat', 'dog'])
    assert out['masks'].shape == (1, 48, 80) and out['label_names'][0] in ('cat', 'dog')
