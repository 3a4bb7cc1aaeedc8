"""The demo's request functions, independent of Gradio: text, click/box and anomaly modes.

Call graph (one model call at a time, under ``DemoServices.lock``)::

    segment_text(image, vocabulary, model)
      └─ load_upload (limits, downscale) ─ parse_vocabulary ─ pool.get(model) ─ inferencer(...)
         ─ overlay with legend + shares table
    add_click(image, prompts, action, x, y)       prompt text + preview (no model)
    segment_prompts(image, vocabulary, prompts, model)
      └─ parse_prompts ─ group_objects ─ inferencer.prompt (SAM masks, mask-pooled CLIP labels)
    detect_anomaly(image, object name, references)
      └─ AnomalyInferencer (ovseg.apis; references for few-shot methods) ─ heat map + image score

Every function returns plain values (RGB arrays, HTML, a Markdown status) or raises an exception
whose message is meant for the page (see ``PAGE_ERRORS``).
"""
import os
import threading
import time
from collections import OrderedDict

import numpy as np

from demo.app.anomaly import AnomalyUnavailable
from demo.app.limits import (DemoInputError, InputLimits, load_upload, parse_object_name,
                             parse_references, parse_vocabulary)
from demo.app.prompts import add_click as add_click_text
from demo.app.prompts import check_inside, draw_prompts, group_objects, parse_prompts
from demo.app.render import legend_html, objects_overlay, shares_html
from ovseg.apis import class_palette

RANDOM_NOTE = ('**Random weights** (`--random-weights`): the result is meaningless; a smoke test '
               'only.')


def _no_progress(*args, **kwargs):
    """Stand-in for gr.Progress outside Gradio."""


class DemoServices:
    """State shared by all requests: the model pool, SAM, the anomaly model, limits and a lock.

    Args:
        pool (ModelPool): the segmentation models.
        limits (InputLimits, optional): input limits. Default ``InputLimits()``.
        sam_factory (callable, optional): ``() -> SAMPredictor``; None disables the click/box mode.
        sam_reason (str): why the click/box mode is disabled (shown in the page).
        anomaly_factory (callable, optional): ``() -> AnomalyInferencer``; None disables the
            anomaly mode.
        anomaly_reason (str): why the anomaly mode is disabled.
        image_cache (int): decoded uploads kept (by file path, size and time). Default 4.
    """

    def __init__(self, pool, limits=None, sam_factory=None, sam_reason='', anomaly_factory=None,
                 anomaly_reason='', image_cache=4):
        self.pool = pool
        self.limits = limits or InputLimits()
        self._sam_factory, self.sam_reason = sam_factory, sam_reason
        self._anomaly_factory, self.anomaly_reason = anomaly_factory, anomaly_reason
        self.lock = threading.RLock()
        self._sam = None
        self._anomaly = None
        self._images = OrderedDict()
        self._image_cache = max(0, int(image_cache))
        self._image_lock = threading.Lock()

    @property
    def click_available(self):
        return self._sam_factory is not None

    @property
    def anomaly_available(self):
        return self._anomaly_factory is not None

    # ------------------------------------------------------------------------------ inputs
    def image(self, source):
        """Decoded, size-checked, downscaled upload (a small cache avoids decoding it per click)."""
        if not isinstance(source, str) or source.startswith('data:') or not os.path.isfile(source):
            return load_upload(source, self.limits)
        stat = os.stat(source)
        key = (source, stat.st_size, stat.st_mtime_ns)
        with self._image_lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        work = load_upload(source, self.limits)
        with self._image_lock:
            self._images[key] = work
            while len(self._images) > self._image_cache:
                self._images.popitem(last=False)
        return work

    def _status(self, label, work, started, extra=''):
        parts = [f'**{label}** · {work.rgb.shape[1]}x{work.rgb.shape[0]} px · '
                 f'{time.monotonic() - started:.1f} s']
        parts += [text for text in (extra, work.note) if text]
        if self.pool.random_weights:
            parts.append(RANDOM_NOTE)
        return '  \n'.join(parts)

    def _model(self, label, progress):
        spec = self.pool.spec(label)
        if not self.pool.is_loaded(spec.label):
            progress(0.1, desc=f'Loading {spec.label} (first use)')
        return spec, self.pool.get(spec.label)

    # ---------------------------------------------------------------------------- text mode
    def segment_text(self, image, vocabulary, model=None, progress=_no_progress):
        """Image + comma-separated vocabulary -> (overlay with legend, shares HTML, status)."""
        started = time.monotonic()
        work = self.image(image)
        classes = parse_vocabulary(vocabulary, self.limits)
        with self.lock:
            spec, inferencer = self._model(model, progress)
            progress(0.5, desc='Segmenting')
            result = inferencer(work.rgb, vocabulary=classes, return_overlay=True,
                                return_logits=False)
        table = shares_html(result['class_names'], result['shares'])
        return result['overlay'], table, self._status(spec.label, work, started)

    # ----------------------------------------------------------------------- click/box mode
    def add_click(self, image, prompts, action, x, y, on_preview=False):
        """Add a click to the prompt text.

        Args:
            image: the upload.
            prompts (str): current prompt text.
            action (str): 'positive point', 'negative point' or 'box corner'.
            x (float): clicked column, in pixels of the upload (of the preview when
                ``on_preview``).
            y (float): clicked row.
            on_preview (bool): the click was on the (downscaled) preview image.

        Returns:
            tuple[str, np.ndarray]: new prompt text and the preview with the prompts drawn.
        """
        work = self.image(image)
        scale = work.scale if on_preview else 1.0
        height, width = work.original_size
        x = min(max(round(float(x) / scale), 0), width)
        y = min(max(round(float(y) / scale), 0), height)
        text = add_click_text(prompts, action, x, y)
        return text, self.preview(image, text)

    def preview(self, image, prompts):
        """The working image with the prompts drawn (None without an image)."""
        if image is None:
            return None
        work = self.image(image)
        return draw_prompts(work.rgb, parse_prompts(prompts, self.limits), work.scale)

    def _with_sam(self, label, inferencer):
        """Give the model's inferencer the shared SAM (once per loaded model)."""
        sam = self._get_sam()
        self.pool.extra(label, 'sam', lambda: inferencer.set_sam(sam) or True)

    def _get_sam(self):
        if self._sam_factory is None:
            raise DemoInputError(self.sam_reason or 'The click/box mode is not available.')
        if self._sam is None:
            self._sam = self._sam_factory()
        return self._sam

    def segment_prompts(self, image, vocabulary, prompts, model=None, progress=_no_progress):
        """Clicks/boxes -> SAM masks labelled by CLIP: (overlay, objects HTML, status)."""
        started = time.monotonic()
        if not self.click_available:
            raise DemoInputError(self.sam_reason or 'The click/box mode is not available.')
        work = self.image(image)
        classes = parse_vocabulary(vocabulary, self.limits)
        parsed = parse_prompts(prompts, self.limits)
        check_inside(parsed, work.original_size)
        objects = group_objects(parsed)
        if not objects:
            raise DemoInputError('Click on the image to add a positive point (or two box corners) '
                                 'first.')
        with self.lock:
            spec, inferencer = self._model(model, progress)
            inferencer.set_vocabulary(classes)
            self._with_sam(spec.label, inferencer)
            progress(0.3, desc='Embedding the image (SAM and CLIP, once per image) and decoding '
                               'masks')
            found = [self._one_object(inferencer, work.rgb, obj, work.scale) for obj in objects]
        return self._objects_output(work, parsed, found, spec.label, started, len(classes))

    @staticmethod
    def _one_object(inferencer, rgb, obj, scale):
        points = obj['points'] * scale if len(obj['points']) else None
        box = None if obj['box'] is None else (obj['box'] * scale)[None]
        result = inferencer.prompt(rgb, points=points, boxes=box,
                                   point_labels=obj['labels'] if points is not None else None)
        return dict(mask=result['masks'][0], label=int(result['labels'][0]),
                    name=result['label_names'][0], prob=float(result['scores'][0]),
                    iou=float(result['mask_scores'][0]))

    def _objects_output(self, work, parsed, found, label, started, num_classes):
        palette = class_palette(num_classes)
        colours = np.stack([palette[f['label']] for f in found])
        names = [f'{i + 1} {f["name"]}' for i, f in enumerate(found)]
        overlay = objects_overlay(work.rgb, np.stack([f['mask'] for f in found]), names, colours)
        overlay = draw_prompts(overlay, parsed, work.scale)
        rows = [(tuple(int(v) for v in colours[i]), f'#{i + 1}', f['name'], f'{f["prob"]:.2f}',
                 f'{f["iou"]:.2f}', f'{100.0 * f["mask"].mean():.1f}%')
                for i, f in enumerate(found)]
        table = legend_html(rows, ['object', 'label', 'CLIP prob.', 'SAM IoU', 'area'],
                            'ovseg-objects')
        note = (f'{len(found)} object(s) from {len(parsed.points)} point(s), '
                f'{len(parsed.boxes)} box(es)')
        return overlay, table, self._status(label, work, started, note)

    # ------------------------------------------------------------------------- anomaly mode
    def _get_anomaly(self, progress):
        if self._anomaly_factory is None:
            raise AnomalyUnavailable(self.anomaly_reason or 'The anomaly mode is not available.')
        if self._anomaly is None:
            progress(0.1, desc='Loading the anomaly model (first use)')
            self._anomaly = self._anomaly_factory()
        return self._anomaly

    def detect_anomaly(self, image, object_name, references=None, progress=_no_progress):
        """Image + object name (+ normal reference images) -> (heat map with colour bar, score HTML,
        status). References make few-shot methods (WinCLIP+, AdaptCLIP) compare with them; zero-shot
        methods refuse them."""
        started = time.monotonic()
        if not self.anomaly_available:
            raise AnomalyUnavailable(self.anomaly_reason or 'The anomaly mode is not available.')
        work = self.image(image)
        name = parse_object_name(object_name, self.limits)
        refs = [self.image(source).rgb for source in parse_references(references, self.limits)]
        with self.lock:
            inferencer = self._get_anomaly(progress)
            if refs and not inferencer.uses_references:
                raise DemoInputError('This anomaly model is zero-shot and does not use reference images: '
                                     'remove them, or start the demo with a few-shot config.')
            progress(0.5, desc='Scoring' + (f' against {len(refs)} reference image(s)' if refs else ''))
            result = inferencer(work.rgb, name, references=refs or None, return_overlay=True)
        amap = result['anomaly_map']
        rows = [(None, 'image score', f"{result['score']:.3f}"),
                (None, 'max pixel score', f'{amap.max():.3f}'),
                (None, 'mean pixel score', f'{amap.mean():.3f}')]
        table = legend_html(rows, ['', 'value (0 normal … 1 anomalous)'], 'ovseg-anomaly')
        mode = f'{len(refs)}-shot' if refs else 'zero-shot'
        return result['overlay'], table, self._status(f'Anomaly: {name}', work, started, mode)
