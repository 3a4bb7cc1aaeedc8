import pytest
import torch
import torch.nn.functional as F

import ovseg  # noqa: F401
from ovseg.models.backbones import OpenCLIPBackbone
from ovseg.models.text_encoders import OVTextClassifier, encode_text_trimmed, max_over_synonyms
from ovseg.testing import tiny_clip_arch


@pytest.fixture(scope='module')
def backbone():
    return OpenCLIPBackbone(arch=tiny_clip_arch('vit'))


def test_trimming_leaves_embeddings_unchanged(backbone):
    prompts = ['a photo of a cat.', 'a bad photo of the hard to see wooden table with a spoon.', 'x']
    tokens = backbone.tokenizer(prompts)
    with torch.no_grad():
        full = backbone.clip.encode_text(tokens)
        trimmed = encode_text_trimmed(backbone.clip, tokens)
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-5)


def test_template_mean_and_synonym_layout(backbone):
    clf = OVTextClassifier(templates=('a photo of a {}.', 'a drawing of a {}.'), cache_dir=None)
    out = clf(backbone, ['cat', 'person|man|woman'])
    assert out.embeddings.shape == (4, backbone.embed_dim)
    assert out.synonym_to_class.tolist() == [0, 1, 1, 1]
    assert out.names == ['cat', 'person']
    torch.testing.assert_close(out.embeddings.norm(dim=-1), torch.ones(4))
    raw = clf.encode_prompts(backbone, ['a photo of a cat.', 'a drawing of a cat.'])
    torch.testing.assert_close(out.embeddings[0], F.normalize(raw.mean(0), dim=0), atol=1e-6, rtol=0)


def test_batching_does_not_change_results(backbone):
    small = OVTextClassifier(templates='imagenet80', batch_size=7, cache_dir=None)
    big = OVTextClassifier(templates='imagenet80', batch_size=1000, cache_dir=None)
    torch.testing.assert_close(small(backbone, ['cat', 'dog']).embeddings,
                               big(backbone, ['cat', 'dog']).embeddings, atol=1e-6, rtol=0)


def test_disk_cache_hit_skips_encoding(backbone, tmp_path, monkeypatch):
    clf = OVTextClassifier(templates='single', cache_dir=str(tmp_path))
    first = clf(backbone, ['cat', 'dog']).embeddings
    assert len(list(tmp_path.glob('*.pt'))) == 1
    fresh = OVTextClassifier(templates='single', cache_dir=str(tmp_path))
    monkeypatch.setattr(fresh, 'encode_prompts', lambda *a: pytest.fail('cache miss'))
    torch.testing.assert_close(fresh(backbone, ['cat', 'dog']).embeddings, first)


def test_cache_key_changes_with_weights_names_and_templates(backbone, tmp_path):
    clf = OVTextClassifier(templates='single', cache_dir=str(tmp_path))
    clf(backbone, ['cat'])
    clf(backbone, ['dog'])
    OVTextClassifier(templates='vild14', cache_dir=str(tmp_path))(backbone, ['cat'])
    other = OpenCLIPBackbone(arch=tiny_clip_arch('vit'))
    with torch.no_grad():  # other weights for sure (fixtures may share a seed)
        other.clip.text_projection.add_(1.0)
    OVTextClassifier(templates='single', cache_dir=str(tmp_path))(other, ['cat'])
    assert len(list(tmp_path.glob('*.pt'))) == 4


def test_corrupt_cache_entry_is_recomputed(backbone, tmp_path):
    clf = OVTextClassifier(templates='single', cache_dir=str(tmp_path))
    ref = clf(backbone, ['cat']).embeddings
    for path in tmp_path.glob('*.pt'):
        path.write_bytes(b'garbage')
    again = OVTextClassifier(templates='single', cache_dir=str(tmp_path))(backbone, ['cat']).embeddings
    torch.testing.assert_close(again, ref)


def test_max_over_synonyms():
    logits = torch.tensor([[1., 5., 2., 0.]])[..., None, None]
    out = max_over_synonyms(logits, torch.tensor([0, 1, 1, 2]), 3)
    assert out.flatten().tolist() == [1., 5., 0.]


@pytest.mark.parametrize('bad', [[], ['cat', 'cat'], 'no_such_vocabulary'])
def test_bad_vocabularies(backbone, bad):
    from ovseg.text import VocabularyError
    with pytest.raises(VocabularyError):
        OVTextClassifier(templates='single', cache_dir=None)(backbone, bad)


def test_bad_templates():
    with pytest.raises(ValueError):
        OVTextClassifier(templates=['no placeholder'])


def test_cost_is_announced_before_encoding_and_not_on_a_hit(backbone, tmp_path, monkeypatch):
    import ovseg.models.text_encoders.text_classifier as module
    said = []
    monkeypatch.setattr(module, 'print_log', lambda msg, **kw: said.append(msg))
    clf = OVTextClassifier(templates=['a {}.', 'the {}.'], cache_dir=str(tmp_path))
    clf(backbone, ['cat', 'dog|puppy'])
    assert len(said) == 1 and 'encoding 6 prompts (3 names x 2 templates)' in said[0] and str(tmp_path) in said[0]
    OVTextClassifier(templates=['a {}.', 'the {}.'], cache_dir=str(tmp_path))(backbone, ['cat', 'dog|puppy'])
    assert len(said) == 1  # a disk-cache hit encodes nothing
    OVTextClassifier(templates=['a {}.'], cache_dir=None)(backbone, ['cat'])
    assert 'not cached' in said[-1]
