"""The demo's request functions, independent of Gradio: text, click/box and anomaly modes.

Call graph (model calls run under ``DemoServices.gate``: several at once where memory allows, see
``demo.app.capacity``; each on an inferencer of its own from ``pool.lease``)::

    segment_text(image, vocabulary, model)
      └─ load_upload (limits, downscale) ─ parse_vocabulary ─ gate.slot ─ pool.lease(model)
         ─ inferencer(...) ─ overlay with legend + shares table
    add_click(image, prompts, action, x, y)       prompt text + preview (no model)
    segment_prompts(image, vocabulary, prompts, model)
      └─ parse_prompts ─ group_objects ─ inferencer.prompt (SAM masks, mask-pooled CLIP labels)
    detect_anomaly(image, object name, references)
      └─ AnomalyInferencer (ovseg.apis; references for few-shot methods; one request at a time, as
         it holds the request's references) ─ heat map + image score

Every function returns plain values (RGB arrays, HTML, a Markdown status) or raises an exception
whose message is meant for the page (see ``PAGE_ERRORS``).
"""
import os
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from demo.app.anomaly import AnomalyUnavailable
from demo.app.capacity import RequestGate
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


# Vocabulary of the warm-up request that measures the default model's memory (see warm_up).
WARM_UP_VOCABULARY = ('object', 'sky')


class DemoServices:
    """State shared by all requests: the model pool, SAM, the anomaly model, limits and the gate.

    Args:
        pool (ModelPool): the segmentation models.
        limits (InputLimits, optional): input limits. Default ``InputLimits()``.
        sam_factory (callable, optional): ``() -> SAMPredictor``; None disables the click/box mode.
        sam_reason (str): why the click/box mode is disabled (shown in the page).
        anomaly_factory (callable, optional): ``() -> AnomalyInferencer``; None disables the
            anomaly mode.
        anomaly_reason (str): why the anomaly mode is disabled.
        image_cache (int): decoded uploads kept (by file path, size and time). Default 4.
        gate (RequestGate, optional): admits model calls. Default ``RequestGate(1)``: one at a time.
    """

    def __init__(self, pool, limits=None, sam_factory=None, sam_reason='', anomaly_factory=None,
                 anomaly_reason='', image_cache=4, gate=None):
        self.pool = pool
        self.limits = limits or InputLimits()
        self._sam_factory, self.sam_reason = sam_factory, sam_reason
        self._anomaly_factory, self.anomaly_reason = anomaly_factory, anomaly_reason
        self.gate = gate or RequestGate(1)
        self._sam_lock = threading.Lock()
        self._anomaly_lock = threading.Lock()
        self._sam = None
        self._sam_given = weakref.WeakKeyDictionary()  # inferencer -> the SAM it was given
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

    @property
    def max_concurrent(self):
        """int: model calls that may run at once (the page's queue runs this many)."""
        return self.gate.max_in_flight

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

    @staticmethod
    def _on_wait(progress, why='Waiting for memory'):
        def tell(running):
            progress(0.0, desc=f'{why}: {running} request(s) running')
        return tell

    @contextmanager
    def _leased(self, mode, label, progress):
        """(spec, inferencer of its own) for one model call, admitted by the gate."""
        spec = self.pool.spec(label)
        if not self.pool.is_loaded(spec.label):
            # loaded with nothing else in flight: the memory plan holds room for it, not for more
            with self.gate.alone(self._on_wait(progress, f'Waiting to load {spec.label}')):
                progress(0.1, desc=f'Loading {spec.label} (first use)')
                self.pool.get(spec.label)
        with self.gate.slot((mode, spec.label), self._on_wait(progress)):
            with self.pool.lease(spec.label) as inferencer:
                yield spec, inferencer

    def warm_up(self):
        """Segment a ``--max-side`` square image with the default model (the gate measures the
        peak memory of the call when it has a budget). Returns the seconds it took."""
        started = time.monotonic()
        side = self.limits.max_side
        rgb = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        with self._leased('text', None, _no_progress) as (_, inferencer):
            inferencer(rgb, vocabulary=list(WARM_UP_VOCABULARY), return_overlay=True,
                       return_logits=False)
        return time.monotonic() - started

    # ---------------------------------------------------------------------------- text mode
    def segment_text(self, image, vocabulary, model=None, progress=_no_progress):
        """Image + comma-separated vocabulary -> (overlay with legend, shares HTML, status)."""
        started = time.monotonic()
        work = self.image(image)
        classes = parse_vocabulary(vocabulary, self.limits)
        with self._leased('text', model, progress) as (spec, inferencer):
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

    def _with_sam(self, inferencer):
        """Give the request's inferencer the shared SAM (once per inferencer)."""
        sam = self._get_sam()
        if self._sam_given.get(inferencer) is not sam:
            inferencer.set_sam(sam)
            self._sam_given[inferencer] = sam

    def _get_sam(self):
        if self._sam_factory is None:
            raise DemoInputError(self.sam_reason or 'The click/box mode is not available.')
        with self._sam_lock:
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
        with self._leased('click', model, progress) as (spec, inferencer):
            inferencer.set_vocabulary(classes)
            self._with_sam(inferencer)
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
        with self._anomaly_lock, self.gate.slot(('anomaly', ''), self._on_wait(progress)):
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
