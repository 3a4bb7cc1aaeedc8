"""Input safety of the web demo (uploads, vocabularies, object names); the click/box prompt text."""
import base64

import numpy as np
import pytest
from PIL import Image

from demo.app.limits import (DemoInputError, InputLimits, downscale, load_upload, parse_object_name,
                             parse_vocabulary)
from demo.app.prompts import (Prompts, add_click, check_inside, draw_prompts, group_objects,
                              parse_prompts)

LIMITS = InputLimits()


# --------------------------------------------------------------------------------- vocabulary
def test_vocabulary_commas_synonyms_and_blanks():
    classes = parse_vocabulary(' cat , dog| puppy ,, grass,\n sky ,', LIMITS)
    assert classes == ['cat', 'dog|puppy', 'grass', 'sky']


@pytest.mark.parametrize('text', ['', '   ', ',,,', ' | , |', None])
def test_empty_vocabulary_is_refused_with_a_hint(text):
    with pytest.raises(DemoInputError, match='vocabulary is empty.*commas'):
        parse_vocabulary(text, LIMITS)


def test_vocabulary_limits():
    small = InputLimits(max_classes=3, max_synonyms=2, max_name_chars=10, max_text_chars=40)
    with pytest.raises(DemoInputError, match='4 classes; the limit is 3'):
        parse_vocabulary('a, b, c, d', small)
    with pytest.raises(DemoInputError, match='3 synonyms; the limit is 2'):
        parse_vocabulary('a|b|c', small)
    with pytest.raises(DemoInputError, match='longer than 10 characters'):
        parse_vocabulary('a, abcdefghijklmnop', small)
    with pytest.raises(DemoInputError, match='41 characters; the limit is 40'):
        parse_vocabulary('a' * 41, small)


def test_vocabulary_text_is_never_a_path_or_builtin_name(tmp_path, monkeypatch):
    from ovseg.text import load_vocabulary
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'classes.txt').write_text('secret\n')
    # A file path or a built-in name stays a single class name: the page cannot make the server read
    # files or expand 150-class vocabularies past the limit.
    for text in ('classes.txt', 'ade150'):
        classes = parse_vocabulary(text, LIMITS)
        assert classes == [text] and load_vocabulary(classes).names == [text]


def test_object_name():
    assert parse_object_name('  metal   nut ', LIMITS) == 'metal nut'
    with pytest.raises(DemoInputError, match="object's name"):
        parse_object_name(' ', LIMITS)
    with pytest.raises(DemoInputError, match='one phrase'):
        parse_object_name('cup, plate', LIMITS)


# ------------------------------------------------------------------------------------ uploads
def test_upload_small_image_is_kept(demo_files):
    work = load_upload(str(demo_files['image']), LIMITS)
    assert work.rgb.shape == (96, 128, 3) and work.rgb.dtype == np.uint8
    assert work.original_size == (96, 128) and work.scale == 1.0 and work.note == ''
    np.testing.assert_array_equal(work.rgb, np.asarray(Image.open(demo_files['image'])))


def test_upload_large_image_is_downscaled_with_a_note(demo_files):
    work = load_upload(str(demo_files['large']), InputLimits(max_side=500))
    assert work.rgb.shape == (375, 500, 3) and work.original_size == (1500, 2000)
    assert work.scale == pytest.approx(0.25)
    assert work.note == 'The image (2000x1500) was downscaled to 500x375 for the demo.'


def test_text_file_renamed_png_is_refused(demo_files):
    with pytest.raises(DemoInputError, match='not an image') as info:
        load_upload(str(demo_files['text']), LIMITS)
    assert str(demo_files['text'].parent) not in str(info.value)  # no server paths in the page


def test_huge_image_is_refused_from_its_header(demo_files):
    with pytest.raises(DemoInputError, match=r'too large \(400 megapixels\).*up to 40 megapixels'):
        load_upload(str(demo_files['huge']), LIMITS)
    # Below PIL's decompression-bomb guard the demo's own limit answers, naming the size.
    with pytest.raises(DemoInputError, match=r'too large \(2000x1500 pixels\).*up to 1 megapixels'):
        load_upload(str(demo_files['large']), InputLimits(max_pixels=1_000_000))


def test_missing_empty_and_data_url_uploads(demo_files, tmp_path):
    with pytest.raises(DemoInputError, match='Upload an image first'):
        load_upload(None, LIMITS)
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(DemoInputError, match='empty'):
        load_upload(str(empty), LIMITS)
    encoded = base64.b64encode(demo_files['image'].read_bytes()).decode()
    work = load_upload('data:image/png;base64,' + encoded, LIMITS)
    assert work.rgb.shape == (96, 128, 3)
    with pytest.raises(DemoInputError, match='not an image'):
        load_upload('data:image/png;base64,' + base64.b64encode(b'hello').decode(), LIMITS)
    with pytest.raises(DemoInputError, match='base64'):
        load_upload('data:image/png;base64,%%%', LIMITS)


def test_downscale_keeps_aspect_and_small_images():
    rgb = np.zeros((300, 1200, 3), np.uint8)
    assert downscale(rgb, 600).shape == (150, 600, 3)
    assert downscale(rgb, 1200) is rgb


# ------------------------------------------------------------------------------------ prompts
def test_parse_prompts_all_kinds():
    prompts = parse_prompts('+10,20; -3.5,4\nbox 50,60,10,20; corner 7,8', LIMITS)
    assert prompts.points == [(10.0, 20.0, 1), (3.5, 4.0, 0)]
    assert prompts.boxes == [(10.0, 20.0, 50.0, 60.0)]  # corners sorted
    assert prompts.corner == (7.0, 8.0)
    assert parse_prompts('', LIMITS) == Prompts()


@pytest.mark.parametrize('text, message', [
    ('+1,2; rm -rf /', 'Cannot read the prompt'),
    ('box 1,1,1,9', 'has no area'),
    ('; '.join(['+1,1'] * 33), '33 points; the limit is 32'),
    ('; '.join(['box 0,0,5,5'] * 9), '9 boxes; the limit is 8'),
])
def test_parse_prompts_refusals(text, message):
    with pytest.raises(DemoInputError, match=message):
        parse_prompts(text, LIMITS)


def test_add_click_points_and_two_click_boxes():
    text = add_click('', 'positive point', 10, 20)
    text = add_click(text, 'negative point', 30.5, 40)
    text = add_click(text, 'box corner', 100, 80)
    assert text == '+10,20; -30.5,40; corner 100,80'
    text = add_click(text, 'box corner', 50, 200)
    assert text == '+10,20; -30.5,40; box 100,80,50,200'
    assert parse_prompts(text, LIMITS).boxes == [(50.0, 80.0, 100.0, 200.0)]
    with pytest.raises(DemoInputError, match='Unknown click action'):
        add_click(text, 'lasso', 1, 1)


def test_group_objects_boxes_own_their_points():
    prompts = parse_prompts('+5,5; -6,6; +100,100; box 0,0,10,10; box 50,50,60,60', LIMITS)
    objects = group_objects(prompts)
    assert len(objects) == 3
    np.testing.assert_array_equal(objects[0]['points'], [[5, 5], [6, 6]])
    np.testing.assert_array_equal(objects[0]['labels'], [1, 0])
    np.testing.assert_array_equal(objects[0]['box'], [0, 0, 10, 10])
    assert objects[1]['points'].shape == (0, 2) and objects[1]['labels'].shape == (0,)
    assert objects[2]['box'] is None
    np.testing.assert_array_equal(objects[2]['points'], [[100, 100]])
    # Negative points alone make no object.
    assert group_objects(parse_prompts('-5,5', LIMITS)) == []


def test_check_inside_and_draw():
    prompts = parse_prompts('+10,10; -20,5; box 2,2,30,20; corner 4,4', LIMITS)
    check_inside(prompts, (40, 40))
    with pytest.raises(DemoInputError, match=r'Point \(50, 3\) lies outside the 40x30 image'):
        check_inside(parse_prompts('+50,3', LIMITS), (30, 40))
    with pytest.raises(DemoInputError, match='Box .* lies outside'):
        check_inside(parse_prompts('box 50,50,60,60', LIMITS), (30, 40))
    rgb = np.zeros((20, 20, 3), np.uint8)
    drawn = draw_prompts(rgb, prompts, scale=0.5)
    assert drawn.shape == rgb.shape and drawn.any() and not rgb.any()
    assert tuple(drawn[5, 5]) == (40, 220, 60)  # the positive point, at half scale
