"""Input safety for the web demo: upload decoding with size limits, vocabulary and text limits.

Everything a page (or an API client) sends goes through these functions before it reaches a model:

- an uploaded image is decoded from the file Gradio saved in its upload folder (never from a path
  typed by the client: Gradio refuses files outside its upload folder); images above
  ``max_pixels`` are refused from the header, before decoding; images with a side above
  ``max_side`` are downscaled (area interpolation) and the note says so;
- a vocabulary is a comma-separated text parsed into a list of class strings (never a file path or
  a built-in vocabulary name), with limits on classes, synonyms and characters.
"""
import base64
import binascii
import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ovseg.utils.image_io import ImageLoadError, load_image


class DemoInputError(ValueError):
    """Input the demo refuses; the message is shown in the page as it is."""


@dataclass(frozen=True)
class InputLimits:
    """Limits on what the page may send.

    Attributes:
        max_pixels (int): refuse images with more pixels (checked from the header). Default 40 MP.
        max_side (int): downscale images whose long side is larger to this side. Default 1024.
        max_upload_mb (float): upload size limit in MB, enforced by Gradio. Default 25.
        max_classes (int): classes in a vocabulary. Default 50.
        max_synonyms (int): synonyms per class. Default 8.
        max_name_chars (int): characters per class name or synonym. Default 60.
        max_text_chars (int): characters of the whole vocabulary or prompt text. Default 2000.
        max_points (int): click points per request. Default 32.
        max_boxes (int): boxes per request. Default 8.
        max_references (int): normal reference images per anomaly request. Default 8.
    """

    max_pixels: int = 40_000_000
    max_side: int = 1024
    max_upload_mb: float = 25.0
    max_classes: int = 50
    max_synonyms: int = 8
    max_name_chars: int = 60
    max_text_chars: int = 2000
    max_points: int = 32
    max_boxes: int = 8
    max_references: int = 8


@dataclass
class WorkingImage:
    """An uploaded image ready for the models.

    Attributes:
        rgb (np.ndarray): (h, w, 3) uint8 RGB, at most ``max_side`` on its long side.
        original_size (tuple[int, int]): (H, W) of the upload.
        note (str): '' or a sentence saying the image was downscaled.
    """

    rgb: np.ndarray
    original_size: tuple
    note: str = ''

    @property
    def scale(self):
        """Working size / original size (1.0 when not downscaled)."""
        return self.rgb.shape[0] / self.original_size[0]


def _decode_data_url(url, limits):
    """A 'data:image/...;base64,...' URL -> PIL image (header read only)."""
    try:
        payload = base64.b64decode(url.split(',', 1)[1], validate=True)
    except (IndexError, binascii.Error) as err:
        raise DemoInputError('The uploaded image data is not valid base64.') from err
    if len(payload) > limits.max_upload_mb * 1e6:
        raise DemoInputError(f'The uploaded image is larger than {limits.max_upload_mb:g} MB.')
    try:
        return Image.open(io.BytesIO(payload))
    except Exception as err:  # noqa: BLE001  PIL raises many types for non-images
        raise DemoInputError('The uploaded data is not an image (PNG, JPEG, WebP, ...).') from err


def _friendly(err, limits):
    """ImageLoadError -> a sentence for the page (without the server's upload path)."""
    text = str(err)
    if 'megapixels' in text or 'too large' in text:
        size = re.search(r'(\d+)x(\d+) =', text)
        count = re.search(r'\((\d+) pixels\)', text)  # PIL's decompression-bomb message
        what = (f'{size.group(1)}x{size.group(2)} pixels' if size else
                f'{int(count.group(1)) / 1e6:.0f} megapixels' if count else 'too many pixels')
        return (f'The image is too large ({what}); the demo accepts images up to '
                f'{limits.max_pixels / 1e6:g} megapixels. Downscale it and upload it again.')
    if 'not an image' in text or 'wrong extension' in text or 'cannot be decoded' in text:
        return ('The uploaded file is not an image that can be read (PNG, JPEG, WebP, ...); is it '
                'a renamed text or other file?')
    if 'truncated' in text:
        return 'The uploaded image is truncated or damaged; upload it again.'
    if 'empty' in text:
        return 'The uploaded image is empty.'
    return 'The uploaded image cannot be used: ' + text.split(': ', 1)[-1]


def downscale(rgb, max_side):
    """Shrink (H, W, 3) so its long side is at most ``max_side`` (area interpolation).

    Returns:
        np.ndarray: the input itself when it already fits.
    """
    height, width = rgb.shape[:2]
    factor = max_side / max(height, width)
    if factor >= 1.0:
        return rgb
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def load_upload(source, limits):
    """Decode an uploaded image with the demo's limits.

    Args:
        source (str | None): the file Gradio stored for the upload, or a base64 data URL.
        limits (InputLimits): size limits.

    Returns:
        WorkingImage

    Raises:
        DemoInputError: no image, not an image, too many pixels, damaged file.
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise DemoInputError('Upload an image first (or pick one of the examples).')
    if not isinstance(source, str):
        raise DemoInputError('The image must be an uploaded file.')
    try:
        if source.startswith('data:'):
            with _decode_data_url(source, limits) as img:
                rgb = load_image(img, max_pixels=limits.max_pixels)
        else:
            rgb = load_image(source, max_pixels=limits.max_pixels)
    except ImageLoadError as err:
        raise DemoInputError(_friendly(err, limits)) from None
    small = downscale(rgb, limits.max_side)
    note = ''
    if small is not rgb:
        note = (f'The image ({rgb.shape[1]}x{rgb.shape[0]}) was downscaled to '
                f'{small.shape[1]}x{small.shape[0]} for the demo.')
    return WorkingImage(rgb=np.ascontiguousarray(small), original_size=rgb.shape[:2], note=note)


def parse_vocabulary(text, limits):
    """Comma-separated classes with '|' synonyms -> a list of class strings.

    Empty entries (',,' or a trailing comma) are skipped; whitespace around names is removed. The
    list is handed to :func:`ovseg.text.load_vocabulary`, which checks duplicates; a string would
    also be read as a file path or a built-in vocabulary name, which the page must not reach.

    Raises:
        DemoInputError: empty text, too long, too many classes or synonyms, names too long.
    """
    text = '' if text is None else str(text)
    if len(text) > limits.max_text_chars:
        raise DemoInputError(f'The vocabulary has {len(text)} characters; the limit is '
                             f'{limits.max_text_chars}.')
    classes = []
    for entry in text.replace('\n', ',').split(','):
        synonyms = [s.strip() for s in entry.split('|') if s.strip()]
        if not synonyms:
            continue
        if len(synonyms) > limits.max_synonyms:
            raise DemoInputError(f'Class {synonyms[0]!r} has {len(synonyms)} synonyms; the limit '
                                 f'is {limits.max_synonyms}.')
        long = [s for s in synonyms if len(s) > limits.max_name_chars]
        if long:
            raise DemoInputError(f'Class name {long[0][:20]!r}... is longer than '
                                 f'{limits.max_name_chars} characters.')
        classes.append('|'.join(synonyms))
    if not classes:
        raise DemoInputError("The vocabulary is empty: type class names separated by commas, e.g. "
                             "'cat, dog, grass'; '|' separates synonyms ('person|man').")
    if len(classes) > limits.max_classes:
        raise DemoInputError(f'The vocabulary has {len(classes)} classes; the limit is '
                             f'{limits.max_classes}.')
    return classes


def parse_object_name(text, limits):
    """The anomaly mode's object name: one short phrase (no commas or '|')."""
    name = ' '.join(str(text or '').split())
    if not name:
        raise DemoInputError("Type the object's name, e.g. 'bottle' or 'printed circuit board'.")
    if len(name) > limits.max_name_chars:
        raise DemoInputError(f'The object name is longer than {limits.max_name_chars} characters.')
    if any(c in name for c in ',|'):
        raise DemoInputError("The object name is one phrase: leave out ',' and '|'.")
    return name


def parse_references(files, limits):
    """The anomaly mode's normal reference uploads: a list of at most ``max_references`` files (None and
    an empty list mean none)."""
    if files is None:
        return []
    files = [f for f in (files if isinstance(files, (list, tuple)) else [files]) if f]
    if len(files) > limits.max_references:
        raise DemoInputError(f'{len(files)} reference images; the limit is {limits.max_references}.')
    return files
