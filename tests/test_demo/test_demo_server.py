"""The page served on 127.0.0.1, through gradio_client: bad uploads, forged paths, load."""
import gc

import pytest

from demo_test_utils import rss_mb

gradio_client = pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

VOCAB = 'cat, dog|puppy, grass'


@pytest.fixture(scope='module')
def client(live_app):
    return Client(live_app, verbose=False)


def _segment(client, image, vocabulary=VOCAB):
    return client.predict(handle_file(str(image)), vocabulary, 'tiny_segmentor',
                          api_name='/segment')


def _check_ok(result):
    overlay, table, status = result
    assert overlay.endswith('.png') and 'id="ovseg-shares"' in table and 'tiny_segmentor' in status


def test_endpoints(client):
    names = set(client.view_api(print_info=False, return_format='dict')['named_endpoints'])
    assert {'/segment', '/segment_prompts', '/detect_anomaly'} <= names


@pytest.mark.parametrize('upload, vocabulary, message', [
    ('text', VOCAB, 'not an image'),
    ('huge', VOCAB, r'too large \(400 megapixels\)'),
    ('image', '  ,  ', 'vocabulary is empty'),
])
def test_bad_requests_get_a_message_and_the_server_keeps_serving(client, demo_files, upload,
                                                                 vocabulary, message):
    with pytest.raises(AppError, match=message):
        _segment(client, demo_files[upload], vocabulary)
    _check_ok(_segment(client, demo_files['image']))


def test_click_and_anomaly_endpoints(client, demo_files):
    image = handle_file(str(demo_files['image']))
    overlay, table, status = client.predict(image, 'cat, dog', '+40,30; box 60,10,120,90',
                                            'tiny_segmentor', api_name='/segment_prompts')
    assert overlay.endswith('.png') and '#2' in table and '2 object(s)' in status
    heat, table, status = client.predict(image, 'bottle', None, api_name='/detect_anomaly')
    assert heat.endswith('.png') and 'image score' in table and 'zero-shot' in status
    heat, table, status = client.predict(image, 'bottle', [handle_file(str(demo_files['image']))],
                                         api_name='/detect_anomaly')  # a few-shot request
    assert heat.endswith('.png') and 'image score' in table and '1-shot' in status
    with pytest.raises(AppError, match='outside'):
        client.predict(image, 'cat', '+999,1', 'tiny_segmentor', api_name='/segment_prompts')


def test_a_client_cannot_name_server_files_or_models(client, demo_files):
    forged = {'path': '/etc/passwd', 'meta': {'_type': 'gradio.FileData'}}
    with pytest.raises(AppError):
        client.predict(forged, VOCAB, 'tiny_segmentor', api_name='/segment')
    with pytest.raises(AppError, match='not in the list of choices'):
        client.predict(handle_file(str(demo_files['image'])), VOCAB, '/etc/passwd',
                       api_name='/segment')
    _check_ok(_segment(client, demo_files['image']))


def _burst(client, image, count=20):
    jobs = [client.submit(handle_file(str(image)), f'cat, dog, grass, tree{i % 3}',
                          'tiny_segmentor', api_name='/segment') for i in range(count)]
    return [job.result(timeout=300) for job in jobs]


def test_twenty_concurrent_requests_succeed_without_memory_growth(client, demo_files):
    """Queued requests all finish; two more bursts add little memory (caches are bounded).

    Measured in this process (server and client), with room for the allocator warming up;
    ``test_demo_browser.py`` checks the command-line server with megapixel images (slow).
    """
    results = _burst(client, demo_files['image'])
    assert len(results) == 20
    for result in results:
        _check_ok(result)
    gc.collect()
    before = rss_mb()
    for _ in range(2):
        for result in _burst(client, demo_files['image']):
            _check_ok(result)
    gc.collect()
    growth = rss_mb() - before
    print(f'RSS growth over 40 more requests: {growth:.1f} MB')
    assert growth < 80


def test_page_errors_are_escaped_and_internal_errors_contained():
    import gradio as gr

    from demo.app.limits import DemoInputError
    from demo.app.ui import guarded

    def bad_input():
        raise DemoInputError("Class name '<img src=x onerror=alert(1)>' is too long.")

    with pytest.raises(gr.Error) as info:
        guarded(bad_input)
    assert info.value.message == "Class name '&lt;img src=x onerror=alert(1)&gt;' is too long."
    with pytest.raises(gr.Error, match=r'Internal error \(ZeroDivisionError.*keeps running'):
        guarded(lambda: 1 / 0)


def test_identical_outputs_get_distinct_files():
    """Two requests with the same result must not share (and rewrite) one cached file."""
    import numpy as np
    from gradio.processing_utils import encode_pil_to_bytes

    from demo.app.ui import guarded
    rgb = np.zeros((8, 8, 3), np.uint8)
    first, second = guarded(lambda: (rgb, 'x')), guarded(lambda: (rgb, 'x'))
    assert first[1] == 'x' and np.array_equal(np.asarray(first[0]), rgb)
    assert encode_pil_to_bytes(first[0], 'png') != encode_pil_to_bytes(second[0], 'png')


def test_unavailable_modes_are_explained_in_the_page():
    from demo.app.models import ModelPool, ModelSpec
    from demo.app.services import DemoServices
    from demo.app.ui import build_app
    pool = ModelPool([ModelSpec('stub', 'unused.py')], builder=lambda spec: object())
    services = DemoServices(pool, sam_reason='start with --sam-checkpoint',
                            anomaly_reason='no WinCLIP')
    config = build_app(services, examples=False).get_config_file()
    texts = [c['props'].get('value') or '' for c in config['components'] if c['type'] == 'markdown']
    assert any('Click/box mode is not available:** start with --sam-checkpoint' in t for t in texts)
    assert any('Anomaly mode is not available:** no WinCLIP' in t for t in texts)
    buttons = {c['props']['elem_id']: c['props']['interactive'] for c in config['components']
               if c['type'] == 'button'}
    assert buttons['ovseg-click-run'] is False and buttons['ovseg-anomaly-run'] is False
    assert buttons['ovseg-segment'] is True
