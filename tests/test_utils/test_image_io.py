"""load_image: every input kind, every conversion rule; every error names the problem."""
import io

import numpy as np
import pytest
from PIL import Image

from ovseg.utils.image_io import ImageLoadError, load_image, load_images


def _rgb(height=40, width=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(tmp_path, name, image, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_path_array_pil_agree(tmp_path):
    rgb = _rgb()
    path = _save(tmp_path, 'a.png', Image.fromarray(rgb))
    for source in (path, str(path), rgb, Image.fromarray(rgb)):
        out = load_image(source)
        assert out.dtype == np.uint8 and out.shape == (40, 60, 3) and out.flags.c_contiguous
        np.testing.assert_array_equal(out, rgb)
    out = load_image(rgb)
    out[0, 0] = 0
    assert not np.shares_memory(out, rgb)


def test_grayscale_becomes_rgb(tmp_path):
    gray = _rgb()[..., 0]
    path = _save(tmp_path, 'g.png', Image.fromarray(gray))
    for source in (path, gray, gray[..., None]):
        out = load_image(source)
        assert out.shape == (40, 60, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], gray)
    np.testing.assert_array_equal(load_image(np.array([[True, False]]))[0, :, 0], [255, 0])


def test_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, :, 3] = 255  # opaque row keeps its colour, transparent row becomes white
    rgba[1, :, 3] = 0
    path = _save(tmp_path, 'a.png', Image.fromarray(rgba, 'RGBA'))
    for source in (path, rgba):
        out = load_image(source)
        np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
        np.testing.assert_array_equal(out[1, 0], [255, 255, 255])
    la = Image.new('LA', (3, 2), (0, 128))
    assert load_image(la)[0, 0].tolist() == [127, 127, 127]
    palette = Image.new('P', (3, 2), 0)
    palette.info['transparency'] = 0
    assert load_image(palette)[0, 0].tolist() == [255, 255, 255]


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    path = tmp_path / 'd.png'
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith('I')
    for source in (path, values):
        out = load_image(source)
        np.testing.assert_array_equal(out[..., 0], [[0, 1, 128, 255]])
        np.testing.assert_array_equal(out[..., 2], out[..., 0])


def test_float_and_cmyk(tmp_path):
    np.testing.assert_array_equal(load_image(np.array([[0.0, 0.5, 1.0]]))[0, :, 1], [0, 128, 255])
    path = _save(tmp_path, 'c.jpg', Image.new('CMYK', (4, 3), (0, 255, 255, 0)))
    out = load_image(path)
    assert out.shape == (3, 4, 3) and out[1, 1, 0] > 200 and out[1, 1, 1] < 60


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:5, :5] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the viewer rotates 90 degrees clockwise
    path = _save(tmp_path, 'r.jpg', Image.fromarray(rgb), exif=exif, quality=95)
    out = load_image(path)
    assert out.shape == (60, 40, 3)
    assert out[:5, -5:].mean() > 200 and out[:5, :5].mean() < 50  # top-left moved to top-right


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG'])
def test_truncated_file_raises(tmp_path, fmt):
    buffer = io.BytesIO()
    Image.fromarray(_rgb(200, 300)).save(buffer, fmt)
    path = tmp_path / f'cut.{fmt.lower()}'
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r'cut\.(png|jpeg).*truncated'):
        load_image(path)


@pytest.mark.parametrize('content,match', [
    (None, 'not found'),
    (b'', 'empty'),
    (b'this is text, not a picture\n', 'not an image'),
])
def test_bad_files_raise(tmp_path, content, match):
    path = tmp_path / 'bad.png'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=match) as info:
        load_image(path)
    assert 'bad.png' in str(info.value)
    with pytest.raises(ImageLoadError, match='directory'):
        load_image(tmp_path)


@pytest.mark.parametrize('array,match', [
    (np.zeros((0, 5, 3), np.uint8), 'empty'),
    (np.zeros((4, 5, 2), np.uint8), 'expected shape'),
    (np.zeros((2, 4, 5, 3), np.uint8), 'expected shape'),
    (np.zeros((4, 5, 3), np.int64), 'dtype must be'),
    (np.full((4, 5, 3), 2.0), r'must be in \[0, 1\]'),
    (np.full((4, 5, 3), np.nan), 'NaN'),
])
def test_bad_arrays_raise(array, match):
    with pytest.raises(ImageLoadError, match=match):
        load_image(array)


def test_max_pixels_and_other_sources(tmp_path):
    path = _save(tmp_path, 'big.png', Image.fromarray(_rgb(50, 40)))
    for source in (path, _rgb(50, 40)):
        with pytest.raises(ImageLoadError, match='max_pixels=1999'):
            load_image(source, max_pixels=1999)
        assert load_image(source, max_pixels=2000).shape == (50, 40, 3)
    with pytest.raises(ImageLoadError, match='empty'):
        load_image(Image.new('RGB', (0, 0)))
    with pytest.raises(ImageLoadError, match='int'):
        load_image(42)


def test_load_images(tmp_path):
    path = _save(tmp_path, 'a.png', Image.fromarray(_rgb(10, 20)))
    out = load_images([path, _rgb(5, 6)])
    assert [o.shape for o in out] == [(10, 20, 3), (5, 6, 3)]
    with pytest.raises(ImageLoadError, match='list'):
        load_images(path)
