"""Load images from paths, arrays or PIL images into (H, W, 3) uint8 RGB arrays, with clear errors.

Conversion rules (the same for files, PIL images and arrays):

- EXIF orientation is applied (files and PIL images), so the array is upright as a viewer shows it.
- Grayscale ('L', '1', (H, W) or (H, W, 1) arrays) is repeated into three channels.
- Transparency ('RGBA', 'LA', 'PA', 'P' with a transparent colour, (H, W, 4) arrays) is
  composited on white: transparent regions usually mean "nothing here", and white reads as empty
  to CLIP and to people, while dropping alpha would expose whatever colour the encoder left in the
  transparent pixels.
- 16-bit data ('I;16*' and 'I' modes, uint16 arrays) is scaled with rounding,
  ``round(v * 255 / 65535)`` (65535 -> 255, 32768 -> 128), never clipped. Mode 'I' (32-bit
  integers) is read as 16-bit data, which is what PNG, TIFF and PGM decoders put in it; values
  outside [0, 65535] are an error.
- Float data (mode 'F', float arrays) must lie in [0, 1] and is scaled by 255 with rounding.
- CMYK, YCbCr and other modes go through PIL's ``convert('RGB')``.

Truncated files raise: PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default (False),
so PIL refuses to fill the missing part with grey. (If the calling program sets it to True,
truncation can no longer be detected.)
"""
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Errors PIL raises while decoding damaged data (OSError: truncated; SyntaxError/ValueError: broken
# chunks or headers; EOFError: data ends inside a header; zlib errors arrive as OSError/ValueError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

_ARRAY_DTYPES = 'uint8, uint16, bool or float (in [0, 1])'


class ImageLoadError(ValueError):
    """An image cannot be loaded or converted; the message names the source and the problem."""


def _describe(source):
    """Short human name of a source for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, np.ndarray):
        return f'array of shape {source.shape} and dtype {source.dtype}'
    if isinstance(source, Image.Image):
        return f'PIL image (mode {source.mode}, size {source.size[0]}x{source.size[1]})'
    return f'object of type {type(source).__name__}'


def _check_size(width, height, name, max_pixels):
    """Raise ImageLoadError for empty images and images above ``max_pixels``."""
    if width <= 0 or height <= 0:
        raise ImageLoadError(f'Image {name} is empty ({width}x{height} pixels).')
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f'Image {name} has {width}x{height} = {width * height / 1e6:.1f} megapixels, above the '
            f'limit max_pixels={max_pixels} ({max_pixels / 1e6:.1f} MP); downscale it or raise '
            f'max_pixels.')


def _composite_on_white(rgba):
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8 RGB blended on white with integer rounding."""
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:].astype(np.uint16)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _scale_16bit(arr, name):
    """Integer array with 16-bit range -> uint8 with rounding (65535 -> 255, 32768 -> 128)."""
    if arr.dtype != np.uint16:
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 65535:
            raise ImageLoadError(f'Image {name} holds integer values in [{low}, {high}]; expected '
                                 f'16-bit data in [0, 65535].')
    wide = arr.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _scale_float(arr, name):
    """Float array in [0, 1] -> uint8 with rounding."""
    if arr.size and not np.isfinite(arr).all():
        raise ImageLoadError(f'Image {name} holds NaN or infinite values.')
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if low < 0.0 or high > 1.0:
        raise ImageLoadError(f'Image {name} is a float image with values in [{low:.4g}, '
                             f'{high:.4g}]; float images must be in [0, 1] (divide 8-bit data by '
                             f'255).')
    return np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)


def _to_rgb(channels, name):
    """(H, W) or (H, W, C) uint8, C in {1, 3, 4} -> (H, W, 3) uint8 RGB."""
    if channels.ndim == 2:
        channels = channels[..., None]
    if channels.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(channels, 3, axis=2))
    if channels.shape[2] == 4:
        return _composite_on_white(channels)
    if channels.shape[2] == 3:
        return np.ascontiguousarray(channels)
    raise ImageLoadError(f'Image {name} has {channels.shape[2]} channels; expected 1, 3 or 4.')


def _pil_to_rgb(img, name):
    """A loaded PIL image -> (H, W, 3) uint8 RGB (EXIF orientation applied)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == 'RGB':
        return np.asarray(img, dtype=np.uint8).copy()
    if mode.startswith('I;16') or mode == 'I':
        return _to_rgb(_scale_16bit(np.asarray(img), name), name)
    if mode == 'F':
        return _to_rgb(_scale_float(np.asarray(img), name), name)
    if mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (mode == 'P' and 'transparency' in img.info):
        return _composite_on_white(np.asarray(img.convert('RGBA')))
    try:
        return np.asarray(img.convert('RGB'), dtype=np.uint8).copy()
    except (ValueError, OSError) as err:
        raise ImageLoadError(f'Image {name} has PIL mode {mode!r}, which cannot be converted to '
                             f'RGB: {err}') from err


def _decode_pil(img, name, max_pixels):
    """Check the size from the header, then decode (raising on truncated data) and convert."""
    _check_size(img.size[0], img.size[1], name, max_pixels)
    try:
        img.load()
    except _DECODE_ERRORS as err:
        problem = 'is truncated' if 'truncated' in str(err).lower() else 'cannot be decoded'
        raise ImageLoadError(f'Image {name} {problem} ({type(err).__name__}: {err}); the file is '
                             f'damaged or incomplete.') from err
    return _pil_to_rgb(img, name)


def _load_path(path, max_pixels):
    name = str(path)
    if not os.path.exists(path):
        raise ImageLoadError(f'Image file not found: {name}')
    if os.path.isdir(path):
        raise ImageLoadError(f'Image path is a directory, not a file: {name}')
    if os.path.getsize(path) == 0:
        raise ImageLoadError(f'Image file {name} is empty (0 bytes).')
    try:
        img = Image.open(path)
    except UnidentifiedImageError as err:
        raise ImageLoadError(f'File {name} is not an image PIL can read (unknown or damaged '
                             f'format; is it an image with the wrong extension?).') from err
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f'Image {name} is too large to decode safely: {err}') from err
    except (PermissionError, IsADirectoryError) as err:
        raise ImageLoadError(f'Image file {name} cannot be opened: {err}') from err
    except _DECODE_ERRORS as err:
        raise ImageLoadError(
            f'Image {name} has a damaged header ({type(err).__name__}: {err}).') from err
    with img:
        return _decode_pil(img, name, max_pixels)


def _load_array(arr, max_pixels):
    name = _describe(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ImageLoadError(f'Cannot use {name} as an image: expected shape (H, W), (H, W, 1), '
                             f'(H, W, 3) RGB or (H, W, 4) RGBA.')
    _check_size(arr.shape[1], arr.shape[0], name, max_pixels)
    if arr.dtype == np.uint8:
        data = arr
    elif arr.dtype == np.bool_:
        data = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        data = _scale_16bit(arr, name)
    elif np.issubdtype(arr.dtype, np.floating):
        data = _scale_float(arr, name)
    else:
        raise ImageLoadError(f'Cannot use {name} as an image: dtype must be {_ARRAY_DTYPES} '
                             f'(convert with arr.astype(np.uint8) if the values are 0..255).')
    return _to_rgb(data, name)


def load_image(source, max_pixels=None):
    """Load one image as an upright (H, W, 3) uint8 RGB array.

    Args:
        source (str | Path | np.ndarray | PIL.Image.Image): a file path; an RGB(A) or grayscale
            array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with dtype uint8, uint16, bool
            or float in [0, 1] (channel order is taken as RGB: convert OpenCV's BGR first); or a
            PIL image.
        max_pixels (int, optional): refuse images with more than this many pixels (H * W). For
            files the check uses the header, before decoding. Default None (no limit beyond PIL's
            own decompression-bomb guard).

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB, C-contiguous, never a view of the input.

    Raises:
        ImageLoadError: missing, unreadable, truncated, empty or too large images; unsupported array
            shapes, dtypes or value ranges. The message names the source and the problem.
    """
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), max_pixels)
    if isinstance(source, np.ndarray):
        out = _load_array(source, max_pixels)
        return out.copy() if np.may_share_memory(out, source) else out
    if isinstance(source, Image.Image):
        return _decode_pil(source, _describe(source), max_pixels)
    raise ImageLoadError(f'Cannot load an image from an {_describe(source)}; pass a path, a numpy '
                         f'array or a PIL image.')


def load_images(sources, max_pixels=None):
    """Load a list of images with :func:`load_image`.

    Args:
        sources (Sequence): paths, arrays or PIL images (a single path or image is not a sequence
            here: wrap it in a list).
        max_pixels (int, optional): per-image pixel limit, see :func:`load_image`.

    Returns:
        list[np.ndarray]: (H_i, W_i, 3) uint8 RGB arrays, in order.
    """
    if isinstance(sources, (str, os.PathLike, np.ndarray, Image.Image)):
        raise ImageLoadError(f'load_images expects a list of images, got a single '
                             f'{_describe(sources)}; use load_image or wrap it in a list.')
    return [load_image(source, max_pixels) for source in sources]
