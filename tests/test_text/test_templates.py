"""Tests of ovseg.text.templates: template sets, get_templates and parity with the fixtures."""
import json
import os
from pathlib import Path

import pytest

from ovseg.text import TEMPLATES, get_templates

REPO_ROOT = Path(__file__).resolve().parents[2]


def parity_dir():
    """$OVSEG_PARITY_DIR, else ../shared/parity next to the repository."""
    return Path(os.environ.get('OVSEG_PARITY_DIR', REPO_ROOT.parent / 'shared' / 'parity'))


@pytest.mark.parametrize('name,count', [('imagenet80', 80), ('maskclip85', 85), ('vild14', 14),
                                        ('single', 1)])
def test_template_sets(name, count):
    templates = TEMPLATES[name]
    assert isinstance(templates, tuple) and len(templates) == count
    assert len(set(templates)) == count
    assert all(t.count('{}') == 1 for t in templates)
    assert get_templates(name) == templates


def test_template_set_contents():
    assert TEMPLATES['imagenet80'][0] == 'a bad photo of a {}.'
    assert TEMPLATES['imagenet80'][-1] == 'a tattoo of the {}.'
    assert TEMPLATES['maskclip85'][:80] == TEMPLATES['imagenet80']
    assert TEMPLATES['maskclip85'][80:] == (
        'there is a {} in the scene.', 'there is the {} in the scene.', 'this is a {} in the scene.',
        'this is the {} in the scene.', 'this is one {} in the scene.')
    assert TEMPLATES['vild14'][:2] == ('a photo of a {}.', 'This is a photo of a {}')
    assert TEMPLATES['single'] == ('a photo of a {}.',)


def test_templates_read_only():
    with pytest.raises(TypeError):
        TEMPLATES['mine'] = ('a {}',)


def test_get_templates_specs():
    assert get_templates('ImageNet80') == TEMPLATES['imagenet80']
    assert get_templates(['a {}.', 'the {}']) == ('a {}.', 'the {}')
    assert get_templates(('a {}.',)) == ('a {}.',)
    assert get_templates('a sketch of a {}.') == ('a sketch of a {}.',)


def test_get_templates_unknown_name():
    with pytest.raises(ValueError) as err:
        get_templates('imagenet81')
    for name in TEMPLATES:
        assert name in str(err.value)


@pytest.mark.parametrize('spec', [[], ()])
def test_get_templates_empty(spec):
    with pytest.raises(ValueError, match='empty'):
        get_templates(spec)


@pytest.mark.parametrize('bad', ['a photo of a cat.', 'a {} and a {}.', 'a {0} photo', 'a {name}'])
def test_get_templates_bad_template(bad):
    with pytest.raises(ValueError) as err:
        get_templates(['a photo of a {}.', bad])
    assert repr(bad) in str(err.value)


def test_get_templates_non_string():
    with pytest.raises(ValueError):
        get_templates(['a {}', 3])
    with pytest.raises(ValueError):
        get_templates(5)


def test_imagenet80_matches_maskclip_parity_manifest():
    manifest = parity_dir() / 'maskclip_dinoiser' / 'manifest.json'
    if not manifest.is_file():
        pytest.skip(f'parity manifest not found: {manifest}')
    expected = json.loads(manifest.read_text())['text']['templates']
    assert TEMPLATES['imagenet80'] == tuple(expected)


def test_vild14_matches_fcclip_parity_manifest():
    manifest = parity_dir() / 'fcclip' / 'manifest.json'
    if not manifest.is_file():
        pytest.skip(f'parity manifest not found: {manifest}')
    expected = json.loads(manifest.read_text())['templates']
    assert TEMPLATES['vild14'] == tuple(expected)
