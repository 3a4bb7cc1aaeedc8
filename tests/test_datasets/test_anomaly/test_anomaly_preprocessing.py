"""Anomaly configs preprocess images as their references do.

One JPEG file goes through a config's test pipeline and its model's data preprocessor, and through the
reference's own recipe written with the same libraries (PIL reading, torchvision transforms); the two
network inputs must be the same tensor.

Tolerance (``ovseg.testing.tolerance``): the PIL resizes are the same uint8 operation in both (mmcv's
pillow backend calls ``Image.resize`` like torchvision does on PIL images), so only the normalisation
differs in rounding, ``(x/255 - m)/s`` against ``(x - 255 m)/(255 s)``: two float32 operations on values up
to ~2.6 (depth 2, width 1). WinCLIP's torchvision resize of float images runs on 0-255 values in ovseg and
on 0-1 values in anomalib: a linear map computed in another order, two separable passes whose longest sum
has ``4 * ratio + 1`` taps (bicubic support 2 on each side, stretched by the downscale ratio), then the
normalisation (depth 3). A wrong interpolation, a missing antialias or a centre crop moves values by 1e-2
to 1, far above these bounds (about 1e-6).
"""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import ovseg  # noqa: F401  registers the transforms
from ovseg.registry import MODELS, TRANSFORMS
from ovseg.testing.tolerance import assert_close

REPO = Path(__file__).resolve().parents[3]
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def anomalib_winclip(path):
    """anomalib's WinCLIP: read_image (PIL, float /255), v2 Resize((240, 240), bicubic, antialias), Normalize."""
    image = TF.to_dtype(TF.to_image(Image.open(path).convert('RGB')), torch.float32, scale=True)
    image = TF.resize(image, [240, 240], interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.normalize(image, OPENAI_MEAN, OPENAI_STD)


def pil_recipe(size, interpolation):
    """MuSc's vendored open_clip image_transform, AnoVL's and AnomalyCLIP's get_transform: Resize((s, s))
    on the PIL image, CenterCrop(s), RGB, ToTensor, Normalize (OpenAI statistics)."""
    recipe = T.Compose([T.Resize((size, size), interpolation=interpolation), T.CenterCrop((size, size)),
                        T.ToTensor(), T.Normalize(OPENAI_MEAN, OPENAI_STD)])
    return lambda path: recipe(Image.open(path).convert('RGB'))


# config -> (reference recipe, float32 operations of the resize (0 = identical uint8), resize width)
CASES = {
    'winclip_vit-b16-plus-240_mvtec.py': anomalib_winclip,
    'winclip_vit-b16-plus-240_visa.py': anomalib_winclip,
    'winclip_vit-b16-plus-240_1shot_mvtec.py': anomalib_winclip,  # queries and references alike
    'musc_vit-l14-336_mvtec.py': pil_recipe(518, InterpolationMode.BICUBIC),
    'musc_vit-l14-336_visa.py': pil_recipe(518, InterpolationMode.BICUBIC),
    'anomalyclip_vit-l14-336_mvtec.py': pil_recipe(518, InterpolationMode.BICUBIC),
    'anomalyclip_vit-l14-336_visa.py': pil_recipe(518, InterpolationMode.BICUBIC),
    'anovl_vit-b16-plus-240_mvtec.py': pil_recipe(240, InterpolationMode.BILINEAR),
    'anovl_vit-b16-plus-240_tta_visa.py': pil_recipe(240, InterpolationMode.BILINEAR),
}


@pytest.fixture(scope='module')
def jpeg(tmp_path_factory):
    """A non-square 560 x 730 photo-like JPEG (smooth field + edges + noise), larger than both inputs."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:560, 0:730]
    field = np.stack([128 + 100 * np.sin(xx / 37.0 + c) * np.cos(yy / 23.0 - c) for c in range(3)], -1)
    field[(yy // 40 + xx // 55) % 2 == 0] += 40
    image = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp('anomaly') / 'sample.jpg'
    Image.fromarray(image).save(path, quality=90)
    return str(path)


def ovseg_input(config, path):
    """The config's test pipeline (mask loading as for a normal image) and data preprocessor."""
    cfg = Config.fromfile(str(REPO / 'configs' / 'anomaly' / config))
    pipeline = [TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline]
    results = dict(img_path=path, seg_map_path=None, category='object', defect='good', anomaly_label=0,
                   reduce_zero_label=False, seg_fields=[])
    for transform in pipeline:
        results = transform(results)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    batch = preprocessor(dict(inputs=[results['inputs']], data_samples=[results['data_samples']]), False)
    return batch['inputs'][0], cfg


@pytest.mark.parametrize('config', sorted(CASES))
def test_network_input_equals_the_reference_recipe(config, jpeg):
    actual, cfg = ovseg_input(config, jpeg)
    expected = CASES[config](jpeg)
    assert actual.shape == expected.shape
    resize = cfg.test_dataloader.dataset.pipeline[1]
    if resize['type'] == 'TorchvisionResize':  # float resize in another order: module docstring
        ratio = max(Image.open(jpeg).size[0] / resize['scale'][0], Image.open(jpeg).size[1] / resize['scale'][1])
        assert_close(actual, expected, depth=3, width=math.ceil(4 * ratio) + 1, name=config)
    else:  # identical uint8 resize; the normalisation's rounding only
        assert_close(actual, expected, depth=2, width=1, name=config)


def test_winclip_input_is_not_the_unantialiased_opencv_resize(jpeg):
    """The previous recipe (OpenCV bicubic, no antialias) is far outside the tolerance: the test tells."""
    import cv2
    bgr = cv2.imread(jpeg)
    old = cv2.resize(bgr, (240, 240), interpolation=cv2.INTER_CUBIC)[..., ::-1].astype(np.float32) / 255
    old = TF.normalize(torch.from_numpy(old.copy()).permute(2, 0, 1), OPENAI_MEAN, OPENAI_STD)
    reference = anomalib_winclip(jpeg)
    assert (old - reference).abs().max() > 0.05
