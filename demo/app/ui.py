"""The Gradio page over :class:`~demo.app.services.DemoServices`: layout, events, error messages.

Public API endpoints (also used by ``gradio_client``)::

    /segment          (image, vocabulary, model)            -> (overlay, shares HTML, status)
    /segment_prompts  (image, vocabulary, prompts, model)   -> (overlay, objects HTML, status)
    /detect_anomaly   (image, object name, reference images) -> (heat map, scores HTML, status)

Every model call is queued in one concurrency group (one at a time); input problems and model
errors become ``gr.Error`` messages in the page, and the server keeps serving.
"""
import html
import logging
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from demo.app.anomaly import AnomalyUnavailable
from demo.app.examples import example_files
from demo.app.limits import DemoInputError
from demo.app.prompts import ACTIONS

LOGGER = logging.getLogger('ovseg.demo')
MODEL_QUEUE = 'ovseg-model'

HEADER = """# ovseg: open-vocabulary segmentation
Upload an image (or pick an example), type what to find, separated by commas (`|` joins synonyms:
`person|man`), and press **Segment**. Click on the image to prompt SAM with points (two *box corner*
clicks make a box); the **Anomaly** tab scores an image of one object (add a few normal images of
it for the few-shot comparison)."""

CSS = """
.ovseg-legend { border-collapse: collapse; font-size: 0.95em; }
.ovseg-legend th { font-weight: 600; }
"""


class UploadedImage(gr.Image):
    """``gr.Image`` that hands the uploaded file over undecoded.

    Gradio's own preprocessing opens the file with PIL, so a non-image or a decompression bomb would
    fail with an opaque error before the app sees it. The app decodes the file itself, with limits
    and messages (:func:`demo.app.limits.load_upload`). Gradio has already checked that the file is
    in its upload folder (a client cannot name another path).
    """

    is_template = True  # same front-end component as gr.Image

    def preprocess(self, payload):
        if payload is None:
            return None
        return payload.path if payload.path is not None else payload.url


def _page_error(err):
    """Message of an exception for the page; escaped, as gr.Error renders HTML and messages may
    quote what the user typed."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return html.escape(text or type(err).__name__, quote=False)


def unique_png(rgb):
    """An output image as PIL with a per-request PNG text chunk.

    Gradio stores an output image under the hash of its encoded bytes and rewrites that file in
    place; two requests with identical outputs (the same image and vocabulary) would then rewrite
    a file while it is being downloaded, truncating the download. A request id makes every file
    distinct.
    """
    image = Image.fromarray(rgb)
    image.info.update({'Software': 'ovseg demo', 'ovseg-request': uuid.uuid4().hex})
    return image


def guarded(fn, *args, **kwargs):
    """Run ``fn``; turn every exception into a gr.Error the page shows (the server keeps serving).

    A returned tuple whose first item is an RGB array gets it as :func:`unique_png`.
    """
    from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError
    expected = (DemoInputError, AnomalyUnavailable, WeightsUnavailableError, ValueError, KeyError,
                FileNotFoundError)
    try:
        out = fn(*args, **kwargs)
    except gr.Error:
        raise
    except expected as err:
        raise gr.Error(_page_error(err), print_exception=False) from None
    except Exception as err:  # noqa: BLE001  any other failure is reported, never fatal
        LOGGER.exception('request failed')
        raise gr.Error(f'Internal error ({type(err).__name__}: {_page_error(err)}). The server '
                       f'keeps running; please report this.', print_exception=False) from None
    if isinstance(out, tuple) and out and isinstance(out[0], np.ndarray):
        out = (unique_png(out[0]),) + out[1:]
    return out


def _inputs_column(services, examples):
    pool, limits = services.pool, services.limits
    image = UploadedImage(label='Image (click on it to add SAM prompts)', type='filepath',
                          sources=['upload', 'clipboard'], elem_id='ovseg-image', height=420)
    vocabulary = gr.Textbox(label='Vocabulary (comma-separated, | between synonyms)', lines=2,
                            max_length=limits.max_text_chars, elem_id='ovseg-vocabulary',
                            placeholder='cat, dog, person|man|woman, grass')
    model = gr.Dropdown(choices=pool.labels, value=pool.default_label, label='Model',
                        interactive=len(pool.labels) > 1, elem_id='ovseg-model')
    object_name = gr.Textbox(label='Object name (anomaly mode)', elem_id='ovseg-object',
                             max_length=limits.max_name_chars, placeholder='bottle')
    if examples:
        gr.Examples([list(row) for row in examples], inputs=[image, vocabulary, object_name],
                    label='Examples (scikit-image data)', cache_examples=False,
                    example_labels=[Path(row[0]).stem.replace('_', ' ') for row in examples])
    return image, vocabulary, model, object_name


def _outputs(prefix, label):
    # No label: Gradio draws it over the image's top-left corner, where the legend is.
    gr.Markdown(f'**{label}**')
    image = gr.Image(label=label, show_label=False, format='png', interactive=False,
                     elem_id=f'ovseg-{prefix}-output', height=420)
    table = gr.HTML(elem_id=f'ovseg-{prefix}-table')
    status = gr.Markdown(elem_id=f'ovseg-{prefix}-status')
    return image, table, status


def _text_tab(services, image, vocabulary, model):
    button = gr.Button('Segment', variant='primary', elem_id='ovseg-segment')
    outputs = _outputs('text', 'Segmentation (legend: pixel shares)')

    def segment(image_file, vocab, model_label, progress=gr.Progress()):
        return guarded(services.segment_text, image_file, vocab, model_label, progress=progress)

    gr.on([button.click, vocabulary.submit], segment, [image, vocabulary, model], list(outputs),
          api_name='segment', concurrency_id=MODEL_QUEUE, concurrency_limit=1)


def _click_tab(services, image, vocabulary, model):
    if not services.click_available:
        gr.Markdown(f'**Click/box mode is not available:** {services.sam_reason}',
                    elem_id='ovseg-click-unavailable')
    action = gr.Radio(list(ACTIONS), value=ACTIONS[0], label='A click on the image adds a',
                      elem_id='ovseg-action')
    prompts = gr.Textbox(label='Prompts (pixels of the uploaded image; editable)', lines=2,
                         max_length=services.limits.max_text_chars, elem_id='ovseg-prompts',
                         placeholder='+120,80; -30,40; box 10,10,200,150')
    with gr.Row():
        run = gr.Button('Segment clicked objects', variant='primary', elem_id='ovseg-click-run',
                        interactive=services.click_available)
        clear = gr.Button('Clear prompts', elem_id='ovseg-click-clear')
    outputs = _outputs('click', 'SAM masks labelled by CLIP (click here too)')

    def segment(image_file, vocab, prompt_text, model_label, progress=gr.Progress()):
        return guarded(services.segment_prompts, image_file, vocab, prompt_text, model_label,
                       progress=progress)

    run.click(segment, [image, vocabulary, prompts, model], list(outputs),
              api_name='segment_prompts', concurrency_id=MODEL_QUEUE, concurrency_limit=1)
    clear.click(lambda image_file: ('', guarded(services.preview, image_file, '')), [image],
                [prompts, outputs[0]], api_visibility='private')
    return action, prompts, outputs[0]


def _anomaly_tab(services, image, object_name):
    if not services.anomaly_available:
        gr.Markdown(f'**Anomaly mode is not available:** {services.anomaly_reason}',
                    elem_id='ovseg-anomaly-unavailable')
    references = gr.File(label='Normal reference images (optional, few-shot models)',
                         file_count='multiple', file_types=['image'], type='filepath',
                         elem_id='ovseg-references')
    button = gr.Button('Detect anomalies', variant='primary', elem_id='ovseg-anomaly-run',
                       interactive=services.anomaly_available)
    outputs = _outputs('anomaly', 'Anomaly map (0 blue … 1 red)')

    def detect(image_file, name, reference_files, progress=gr.Progress()):
        return guarded(services.detect_anomaly, image_file, name, reference_files,
                       progress=progress)

    button.click(detect, [image, object_name, references], list(outputs),
                 api_name='detect_anomaly', concurrency_id=MODEL_QUEUE, concurrency_limit=1)


def _wire_clicks(services, tabs, image, action, prompts, preview):
    """Clicks on the input or on the click-mode output add prompts and open the click tab."""
    def on_input(image_file, text, how, evt: gr.SelectData):
        new_text, drawn = guarded(services.add_click, image_file, text, how, *evt.index[:2])
        return new_text, drawn, gr.Tabs(selected='click')

    def on_preview(image_file, text, how, evt: gr.SelectData):
        return guarded(services.add_click, image_file, text, how, *evt.index[:2], on_preview=True)

    image.select(on_input, [image, prompts, action], [prompts, preview, tabs],
                 api_visibility='private', concurrency_limit=4)
    preview.select(on_preview, [image, prompts, action], [prompts, preview],
                   api_visibility='private', concurrency_limit=4)
    # A new image (upload, example or clear) invalidates the prompts: their coordinates belong to
    # the previous image.
    image.change(lambda: '', None, [prompts], api_visibility='private', queue=False)


def build_app(services, title='ovseg demo', examples=True):
    """Build the page.

    Args:
        services (DemoServices): models and limits.
        title (str): browser tab title.
        examples (bool | list): True: scikit-image examples; a list of (path, vocabulary, object)
            rows; False: none.

    Returns:
        gr.Blocks: call ``.queue(...).launch(...)`` (see :func:`launch_app`).
    """
    rows = example_files() if examples is True else (examples or [])
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown(HEADER)
        with gr.Row():
            with gr.Column(scale=1):
                image, vocabulary, model, object_name = _inputs_column(services, rows)
            with gr.Column(scale=1):
                with gr.Tabs(elem_id='ovseg-tabs') as tabs:
                    with gr.Tab('Text', id='text', elem_id='ovseg-tab-text'):
                        _text_tab(services, image, vocabulary, model)
                    with gr.Tab('Click / box', id='click', elem_id='ovseg-tab-click'):
                        action, prompts, preview = _click_tab(services, image, vocabulary, model)
                    with gr.Tab('Anomaly', id='anomaly', elem_id='ovseg-tab-anomaly'):
                        _anomaly_tab(services, image, object_name)
        if services.click_available:
            _wire_clicks(services, tabs, image, action, prompts, preview)
    return app


def launch_app(app, services, host='127.0.0.1', port=7860, max_queue=64, quiet=False,
               prevent_thread_lock=False):
    """Queue (bounded) and serve the page.

    The theme uses system fonts (no web-font requests, so the page works offline); Gradio's run
    history (which can connect the page to a Hugging Face bucket) and MCP server are off.
    """
    theme = gr.themes.Default(font=['ui-sans-serif', 'system-ui', 'sans-serif'],
                              font_mono=['ui-monospace', 'monospace'])
    app.queue(default_concurrency_limit=1, max_size=max_queue)
    return app.launch(server_name=host, server_port=port, theme=theme, css=CSS, quiet=quiet,
                      max_file_size=f'{services.limits.max_upload_mb:g}mb', show_error=False,
                      prevent_thread_lock=prevent_thread_lock, ssr_mode=False,
                      run_history=False, mcp_server=False)
