"""The demo in a real browser (headless Chromium through selenium); ``test_demo_load.py`` loads the
CLI server.

Needs ``chromium`` + ``chromium-driver`` (Debian) and ``selenium``; ``.ci/run`` installs them. The
test skips, saying so, only when no browser or driver is installed. Screenshots are saved under
``tests/artifacts/`` (or ``$OVSEG_TEST_ARTIFACTS``) and their paths printed.
"""
import re
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from demo_test_utils import artifacts_dir

CHROME_ARGS = ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking', '--disable-component-update',
               '--disable-sync', '--disable-dev-shm-usage', '--window-size=1400,1200')


def _browser_paths():
    binary = next((p for p in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome'))
                   if p), None)
    driver = shutil.which('chromedriver')
    return binary, driver


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    webdriver = pytest.importorskip(
        'selenium.webdriver', reason='selenium is not installed (pip install selenium)')
    binary, driver = _browser_paths()
    if binary is None or driver is None:
        pytest.skip('no browser installed: install Debian chromium and chromium-driver '
                    '(apt-get install -y chromium chromium-driver) to run the browser test')
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in CHROME_ARGS + (f'--user-data-dir={tmp_path_factory.mktemp("chrome-profile")}',):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _wait(browser, condition, timeout=120, message=''):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, timeout, poll_frequency=0.25).until(condition, message)


def _find(browser, css):
    from selenium.webdriver.common.by import By
    return browser.find_elements(By.CSS_SELECTOR, css)


def _output_src(browser, elem_id):
    images = _find(browser, f'#{elem_id} img')
    src = images[0].get_attribute('src') if images else ''
    return src if '/file=' in (src or '') else ''


def _screenshot(browser, name):
    path = artifacts_dir() / name
    browser.save_screenshot(str(path))
    print(f'screenshot: {path}')
    return path


def _upload_and_segment(browser, url, image_path):
    from selenium.webdriver.common.by import By
    browser.get(url)
    upload = _wait(browser, lambda b: _find(b, '#ovseg-image input[type=file]'),
                   message='no upload field on the page')[0]
    upload.send_keys(str(image_path))
    _wait(browser, lambda b: _find(b, '#ovseg-image img[src*="/file="]'),
          message='uploaded image not shown')
    vocabulary = browser.find_element(By.CSS_SELECTOR, '#ovseg-vocabulary textarea')
    vocabulary.send_keys('cat, dog|puppy, grass')
    browser.find_element(By.CSS_SELECTOR, '#ovseg-segment').click()
    _wait(browser, lambda b: _output_src(b, 'ovseg-text-output') and _find(b, '#ovseg-shares'),
          message='no overlay and legend after Segment')
    rows = [r.text for r in _find(browser, '#ovseg-shares tbody tr')]
    assert len(rows) == 3 and {r.split()[0] for r in rows} == {'cat', 'dog', 'grass'}
    shares = [float(re.search(r'([\d.]+)%', r).group(1)) for r in rows]
    assert sum(shares) == pytest.approx(100.0, abs=0.3)
    assert 'tiny_segmentor' in browser.find_element(By.CSS_SELECTOR, '#ovseg-text-status').text


def _click_point_and_segment(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    shown = _find(browser, '#ovseg-image img[src*="/file="]')[0]  # not the label's icon
    # The picture is centred in its element (shrunk to fit, never enlarged), so a click just up and
    # left of the element's centre lands up and left of the picture's centre (128, 96).
    ActionChains(browser).move_to_element_with_offset(shown, -12, -8).click().perform()
    def prompt_text(b):  # the click opens the click tab, whose content renders then
        boxes = _find(b, '#ovseg-prompts textarea')
        value = boxes[0].get_attribute('value') if boxes else ''
        return value if re.fullmatch(r'\+\d+,\d+', value or '') else None

    text = _wait(browser, prompt_text, message='the click did not add a positive point')
    x, y = map(int, text[1:].split(','))
    assert 80 <= x < 128 and 50 <= y < 96, (x, y)
    browser.find_element(By.CSS_SELECTOR, '#ovseg-click-run').click()
    _wait(browser, lambda b: _output_src(b, 'ovseg-click-output') and _find(b, '#ovseg-objects'),
          message='no SAM result after clicking')
    rows = [r.text for r in _find(browser, '#ovseg-objects tbody tr')]
    assert len(rows) == 1 and rows[0].split()[0] == '#1'
    assert rows[0].split()[1] in {'cat', 'dog', 'grass'}


def _empty_vocabulary_shows_a_message(browser):
    from selenium.webdriver.common.by import By
    vocabulary = browser.find_element(By.CSS_SELECTOR, '#ovseg-vocabulary textarea')
    vocabulary.clear()
    vocabulary.send_keys(' , ')
    for tab in _find(browser, 'button[role="tab"]'):
        if tab.text.strip() == 'Text':
            tab.click()
    browser.find_element(By.CSS_SELECTOR, '#ovseg-segment').click()
    _wait(browser, lambda b: 'vocabulary is empty' in b.find_element(By.TAG_NAME, 'body').text,
          timeout=60, message='no message for an empty vocabulary')


@pytest.mark.slow
@pytest.mark.browser
def test_browser_upload_segment_click(browser, cli_server, tmp_path):
    """Upload, type a vocabulary, segment, click a point, read the results; screenshots saved."""
    url, proc, _ = cli_server
    image_path = tmp_path / 'astronaut.png'
    from skimage import data
    Image.fromarray(np.ascontiguousarray(data.astronaut()[::2, ::2][:192])).save(image_path)
    started = time.monotonic()
    _upload_and_segment(browser, url, image_path)
    text_shot = _screenshot(browser, 'gradio_demo_text.png')
    _click_point_and_segment(browser)
    click_shot = _screenshot(browser, 'gradio_demo_click.png')
    _empty_vocabulary_shows_a_message(browser)
    _screenshot(browser, 'gradio_demo_error.png')
    assert proc.poll() is None  # the server is still up
    print(f'browser flow: {time.monotonic() - started:.1f} s')
    for shot in (text_shot, click_shot):
        assert Image.open(shot).size[0] >= 1000
