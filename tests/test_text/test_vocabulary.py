"""Tests of ovseg.text.vocabulary: built-in vocabularies, user vocabularies and every error path."""
import ast
import dataclasses
from pathlib import Path

import re

import pytest

from ovseg.text import (BACKGROUND_STUFF, Vocabulary, VocabularyError, available_vocabularies,
                        load_vocabulary, parse_vocabulary_file)
from ovseg.text.vocabulary import VOCABULARY_DIR

COUNTS = {'voc21': 21, 'voc20': 20, 'pc60': 60, 'pc59': 59, 'pc459': 459, 'coco_stuff171': 171,
          'coco_object81': 81, 'cityscapes19': 19, 'ade150': 150, 'ade847': 847,
          'coco_panoptic133': 133}
# the originals' query lists of SCLIP (also used by NACLIP and ClearCLIP) and ClearCLIP's VOC-21 file
COUNTS.update({f'sclip_{name}': COUNTS[name] for name in ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81',
                                                            'coco_stuff171', 'cityscapes19', 'ade150')})
COUNTS['clearclip_voc21'] = 21
# ProxyCLIP's and CorrCLIP's own class files (issue 15)
COUNTS.update({f'corrclip_{name}': COUNTS[name] for name in ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81',
                                                               'coco_stuff171', 'cityscapes19', 'ade150')})
COUNTS.update({f'proxyclip_{name}': COUNTS[name] for name in ('voc21', 'voc20', 'coco_object81')})
# the lists of original publications, one folder per method, named after the general list they match
METHOD_LISTS = {
    'fcclip': ('ade150', 'ade847', 'pc59', 'pc459', 'voc21', 'voc20', 'cityscapes19'),
    'clip_dinoiser': ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19',
                      'ade150'),
    'maskclip': ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150'),
}
METHOD_COUNTS = {f'{method}/{name}': COUNTS[name] for method, names in METHOD_LISTS.items() for name in names}
# the originals' query lists of SCLIP (also used by NACLIP and ClearCLIP) and ClearCLIP's VOC-21 file
COUNTS.update({f'sclip_{name}': COUNTS[name] for name in ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81',
                                                            'coco_stuff171', 'cityscapes19', 'ade150')})
COUNTS['clearclip_voc21'] = 21

# built-in vocabulary -> mmseg dataset class whose METAINFO classes it must equal, in order
MMSEG_DATASETS = {'voc21': 'PascalVOCDataset', 'pc60': 'PascalContextDataset',
                  'pc59': 'PascalContextDataset59', 'coco_stuff171': 'COCOStuffDataset',
                  'cityscapes19': 'CityscapesDataset', 'ade150': 'ADE20KDataset'}


def mmseg_classes(dataset):
    """METAINFO classes of an mmseg dataset (imported lazily; skip when mmseg cannot be imported)."""
    try:
        from ovseg.utils.mmcv_ops import ensure_mmcv_ops
        ensure_mmcv_ops()
        import mmseg.datasets
    except Exception as err:  # noqa: BLE001  any import failure means "no mmseg here"
        pytest.skip(f'mmseg.datasets cannot be imported: {err!r}')
    return list(getattr(mmseg.datasets, dataset).METAINFO['classes'])


def write(tmp_path, text, name='vocab.txt'):
    path = tmp_path / name
    path.write_text(text, encoding='utf-8')
    return path


# ------------------------------------------------------------------------------ built-in vocabularies
def test_available_vocabularies():
    assert available_vocabularies() == sorted({**COUNTS, **METHOD_COUNTS})


@pytest.mark.parametrize('name,count', sorted({**COUNTS, **METHOD_COUNTS}.items()))
def test_builtin_counts_and_format(name, count):
    vocab = load_vocabulary(name)
    assert len(vocab) == count and vocab.name == name
    lines = (VOCABULARY_DIR / f'{name}.txt').read_text(encoding='utf-8').splitlines()
    assert lines[0].startswith('# ')  # source note
    data = [line for line in lines if not line.startswith('#')]
    assert [int(line.split(':', 1)[0]) for line in data] == list(range(count))
    assert all(line == line.strip() and ', ' not in line for line in data)


@pytest.mark.parametrize('name', sorted(METHOD_COUNTS))
def test_method_lists_name_their_source(name):
    """Every list of an original names its repository, commit and file in its header."""
    source = load_vocabulary(name).source
    assert re.search(r'[\w.-]+/[\w.-]+@[0-9a-f]{40} [\w./-]+\.(py|txt)', source), source


def test_fcclip_lists_are_verbatim():
    """FC-CLIP's lists keep their repeats: VOC-21's background has 74 names with 'bag' and 'tiles' twice,
    PC-459 has 'stone' in two classes, ADE-847 'pot' names two classes."""
    voc21 = load_vocabulary('fcclip/voc21')
    background = voc21.classes[0]
    assert voc21.verbatim and len(background) == 74
    assert background.count('bag') == 2 and background.count('tiles') == 2
    assert load_vocabulary('fcclip/voc20').classes == voc21.classes[1:]
    pc459 = load_vocabulary('fcclip/pc459')
    assert sum('stone' in cls for cls in pc459.classes) == 2
    assert load_vocabulary('fcclip/ade847').names.count('pot') == 2
    with pytest.raises(VocabularyError):  # the same classes without the directive are refused
        Vocabulary(voc21.classes)


def test_fcclip_lists_differ_from_the_general_ones_where_issue_found():
    """The general lists added mmseg display names as extra prompts; FC-CLIP's do not have them."""
    assert load_vocabulary('fcclip/ade150').classes[25] == ('house exterior',)
    assert load_vocabulary('ade150').classes[25] == ('house', 'house exterior')
    assert load_vocabulary('fcclip/pc59').classes[40] == ('street', 'streets')
    assert load_vocabulary('fcclip/ade847').classes[72][:4] == ('stove', 'kitchen stove', 'kitchen range',
                                                                'kitchen range')


def test_clip_dinoiser_lists_are_plain_dataset_classes():
    """One name per class, CLIP-DINOiser's CLASSES (e.g. 'dining table', 'potted plant')."""
    for name in METHOD_LISTS['clip_dinoiser']:
        vocab = load_vocabulary(f'clip_dinoiser/{name}')
        assert all(len(cls) == 1 for cls in vocab.classes), name
    voc = load_vocabulary('clip_dinoiser/voc21').names
    assert voc[11] == 'dining table' and voc[16] == 'potted plant' and voc[20] == 'tvmonitor'
    assert load_vocabulary('clip_dinoiser/voc20').names == voc[1:]
    assert load_vocabulary('clip_dinoiser/pc59').names == load_vocabulary('clip_dinoiser/pc60').names[1:]


@pytest.mark.parametrize('method,name,dataset', [
    ('clip_dinoiser', 'ade150', 'ADE20KDataset'), ('clip_dinoiser', 'cityscapes19', 'CityscapesDataset')])
def test_clip_dinoiser_mmseg_lists_equal_mmseg(method, name, dataset):
    expected = [c.strip() for c in mmseg_classes(dataset)]
    assert load_vocabulary(f'{method}/{name}').names == expected


def test_maskclip_lists():
    """MaskCLIP's own names ('airplane', 'tv monitor'); its VOC-21 / PC-60 / COCO-Object lists add a
    background class to them."""
    voc20 = load_vocabulary('maskclip/voc20').names
    assert voc20[0] == 'airplane' and voc20[-1] == 'tv monitor'
    assert load_vocabulary('maskclip/voc21').names == ['background'] + voc20
    assert load_vocabulary('maskclip/pc60').names[1:] == load_vocabulary('maskclip/pc59').names
    stuff = load_vocabulary('maskclip/coco_stuff171').names
    assert load_vocabulary('maskclip/coco_object81').names == ['background'] + stuff[:80]
    assert stuff[91] == 'tile ceiling' and load_vocabulary('maskclip/ade150').names[7] == 'bed'


def test_stripped_trailing_space_gives_the_same_clip_tokens():
    """'bed ' (mmseg / MaskCLIP ADE name) is stored as 'bed': CLIP's tokenizer gives the same tokens."""
    open_clip = pytest.importorskip('open_clip')
    tokenizer = open_clip.get_tokenizer('ViT-B-16')
    assert tokenizer(['a photo of a bed .']).tolist() == tokenizer(['a photo of a bed.']).tolist()


@pytest.mark.parametrize('name', sorted(MMSEG_DATASETS))
def test_builtin_names_equal_mmseg(name):
    expected = [c.strip() for c in mmseg_classes(MMSEG_DATASETS[name])]
    assert load_vocabulary(name).names == expected


def test_derived_vocabularies():
    voc21, coco = load_vocabulary('voc21'), load_vocabulary('coco_stuff171')
    assert load_vocabulary('voc20').classes == voc21.classes[1:]
    assert voc21.classes[0] == ('background',)
    assert load_vocabulary('pc60').classes[1:] == load_vocabulary('pc59').classes
    coco_object = load_vocabulary('coco_object81')
    assert coco_object.classes[0] == ('background',)
    assert coco_object.classes[1:] == coco.classes[:80]


def test_large_vocabularies_consistent_with_small():
    assert set(load_vocabulary('pc59').names) <= set(load_vocabulary('pc459').names)
    missing = set(load_vocabulary('ade150').names) - set(load_vocabulary('ade847').names)
    assert missing == {'screen'}  # ADE-847 splits it into 'crt screen' / 'projection screen'


def test_builtin_spot_checks():
    ade847, pc459 = load_vocabulary('ade847'), load_vocabulary('pc459')
    assert ade847.names[:4] == ['wall', 'building', 'sky', 'tree']
    assert ade847.names[-1] == 'adding machine'
    assert ade847.names[114] == 'bag' and ade847.names[252] == 'handbag'
    assert pc459.names[:3] == ['accordion', 'aeroplane', 'air conditioner']
    assert pc459.names[430] == 'unknown' and pc459.names[-1] == 'wool'
    assert load_vocabulary('ade150').classes[0][:2] == ('wall', 'walls')


@pytest.mark.parametrize('spec,name', [('ADE150', 'ade150'), ('ade-150', 'ade150'),
                                       ('coco-stuff-171', 'coco_stuff171'), (' Voc21 ', 'voc21'),
                                       ('ade20k', 'ade150'), ('cityscapes', 'cityscapes19')])
def test_builtin_name_spellings(spec, name):
    assert load_vocabulary(spec).name == name


# ---------------------------------------------------------------------------- synonyms and copies
@pytest.mark.parametrize('spec', ['ade847', 'coco_stuff171', ['cat', 'person|man|woman']])
def test_synonyms_consistent(spec):
    vocab = load_vocabulary(spec)
    synonyms, owners = vocab.synonyms, vocab.synonym_to_class
    assert len(synonyms) == len(owners) == sum(len(c) for c in vocab.classes)
    assert all(s in vocab.classes[k] for s, k in zip(synonyms, owners))
    assert owners == sorted(owners) and set(owners) == set(range(len(vocab)))
    assert vocab.names == [c[0] for c in vocab.classes]
    assert len({s.lower() for s in synonyms}) == len(synonyms)


def test_vocabulary_object():
    vocab = Vocabulary([[' cat '], ['Golden Retriever', 'dog']])
    assert vocab.classes == (('cat',), ('Golden Retriever', 'dog')) and vocab.name is None
    assert len(vocab) == 2 and load_vocabulary(vocab) is vocab
    assert vocab == Vocabulary((('cat',), ('Golden Retriever', 'dog')))
    assert hash(vocab) == hash(Vocabulary((('cat',), ('Golden Retriever', 'dog'))))
    assert 'num_classes=2' in repr(vocab)
    with pytest.raises(dataclasses.FrozenInstanceError):
        vocab.name = 'x'


def test_with_class_synonyms():
    voc = load_vocabulary('voc21')
    new = voc.with_class_synonyms(0, ('background',) + BACKGROUND_STUFF)
    assert new.classes[0] == ('background',) + BACKGROUND_STUFF
    assert new.classes[1:] == voc.classes[1:] and new.name == 'voc21'
    assert voc.classes[0] == ('background',)  # original untouched
    assert voc.with_class_synonyms(-1, 'tv|television').classes[-1] == ('tv', 'television')


def test_with_class_synonyms_conflicts():
    coco = load_vocabulary('coco_object81')
    new = coco.with_class_synonyms(0, BACKGROUND_STUFF)
    assert 'bed' not in new.classes[0] and len(new.classes[0]) == len(BACKGROUND_STUFF) - 1
    with pytest.raises(VocabularyError, match="'bed'"):
        coco.with_class_synonyms(0, BACKGROUND_STUFF, drop_conflicts=False)
    with pytest.raises(VocabularyError, match='already names'):
        coco.with_class_synonyms(0, ['bed', 'Person'])
    with pytest.raises(VocabularyError, match='out of range'):
        coco.with_class_synonyms(81, ['x'])
    with pytest.raises(VocabularyError, match='empty class name'):
        coco.with_class_synonyms(0, [])


def test_background_stuff():
    assert len(BACKGROUND_STUFF) == 26 == len(set(BACKGROUND_STUFF))
    assert BACKGROUND_STUFF[:3] == ('sky', 'wall', 'tree') and BACKGROUND_STUFF[-1] == 'fence'


# -------------------------------------------------------------------------------- user vocabularies
def test_user_lists():
    assert load_vocabulary(['cat', ' person | man|Woman ']).classes == (
        ('cat',), ('person', 'man', 'Woman'))
    assert load_vocabulary([['cat'], ('person', 'man')]).classes == (('cat',), ('person', 'man'))
    assert load_vocabulary(['xyz']).classes == (('xyz',),)


def test_user_comma_string():
    vocab = load_vocabulary(' cat, dog ,person|man ')
    assert vocab.classes == (('cat',), ('dog',), ('person', 'man')) and vocab.name is None


def test_vocabulary_file(tmp_path):
    path = write(tmp_path, '# note\n0:cat,kitty\n1: dog , puppy\n\n')
    for spec in (path, str(path)):
        vocab = load_vocabulary(spec)
        assert vocab.classes == (('cat', 'kitty'), ('dog', 'puppy')) and vocab.name is None
    assert parse_vocabulary_file(path, name='pets').name == 'pets'


# ------------------------------------------------------------------------------------ error paths
def test_unknown_name():
    with pytest.raises(VocabularyError) as err:
        load_vocabulary('xyz')
    message = str(err.value)
    assert 'unknown vocabulary' in message and "pass a list, e.g. ['xyz']" in message
    assert all(name in message for name in COUNTS)


@pytest.mark.parametrize('spec', ['', '   ', [], ()])
def test_empty_vocabulary(spec):
    with pytest.raises(VocabularyError, match='empty vocabulary'):
        load_vocabulary(spec)


@pytest.mark.parametrize('spec', ['cat,,dog', 'cat, dog,', ['cat', ' '], [[]], ['cat', '|']])
def test_empty_class_name(spec):
    with pytest.raises(VocabularyError, match='empty class name'):
        load_vocabulary(spec)


def test_empty_synonym():
    with pytest.raises(VocabularyError, match='empty synonym'):
        load_vocabulary(['person||man'])


def test_duplicate_class():
    with pytest.raises(VocabularyError) as err:
        load_vocabulary(['cat', 'dog', ' Cat '])
    message = str(err.value)
    assert 'duplicate class' in message and "'cat'" in message
    assert 'position 0' in message and 'position 2' in message


def test_synonym_in_two_classes():
    with pytest.raises(VocabularyError, match="synonym 'Man' is in two classes"):
        load_vocabulary(['person|man', 'guy|Man'])


def test_synonym_twice_in_class():
    with pytest.raises(VocabularyError, match='twice'):
        load_vocabulary(['person|man|Man'])


@pytest.mark.parametrize('spec', [3, None, [3], [['cat', 3]], {'cat'}])
def test_bad_types(spec):
    with pytest.raises(VocabularyError):
        load_vocabulary(spec)


def test_vocabulary_rejects_strings():
    with pytest.raises(VocabularyError, match='load_vocabulary'):
        Vocabulary('cat')
    with pytest.raises(VocabularyError):
        Vocabulary(('cat', 'dog'))


def test_missing_file(tmp_path):
    with pytest.raises(VocabularyError, match='not found'):
        load_vocabulary(str(tmp_path / 'none.txt'))
    with pytest.raises(VocabularyError, match='cannot read'):
        parse_vocabulary_file(tmp_path / 'none.txt')


@pytest.mark.parametrize('text,line,match', [
    ('0:cat\n2:dog\n', 2, 'where 1 was expected'),
    ('1:cat\n', 1, 'where 0 was expected'),
    ('0:cat\ndog\n', 2, 'expected "id:name'),
    ('# c\nx:cat\n', 2, 'not an integer'),
    ('0:cat\n1:\n', 2, 'empty class name'),
    ('0:cat,,kitty\n', 1, 'empty synonym'),
    ('# only a comment\n', None, 'empty vocabulary'),
])
def test_bad_file_lines(tmp_path, text, line, match):
    path = write(tmp_path, text)
    with pytest.raises(VocabularyError, match=match) as err:
        load_vocabulary(path)
    assert str(path) in str(err.value)
    if line is not None:
        assert f'{path}:{line}' in str(err.value)


def test_file_duplicates_report_lines(tmp_path):
    path = write(tmp_path, '# note\n0:cat\n1:dog\n2:CAT\n')
    with pytest.raises(VocabularyError, match='duplicate class') as err:
        load_vocabulary(path)
    assert f'{path}:2' in str(err.value) and f'{path}:4' in str(err.value)
    path = write(tmp_path, '0:cat,kitty\n1:dog,kitty\n', name='syn.txt')
    with pytest.raises(VocabularyError, match='two classes') as err:
        load_vocabulary(path)
    assert f'{path}:1' in str(err.value) and f'{path}:2' in str(err.value)


# ------------------------------------------------------------------------------------- torch-free
def test_text_package_is_torch_free():
    heavy = {'torch', 'numpy', 'mmseg', 'mmcv', 'mmengine', 'open_clip'}
    for path in Path(VOCABULARY_DIR).parent.glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or '']
            else:
                continue
            assert not {m.split('.')[0] for m in modules} & heavy, (path.name, modules)


def test_verbatim_files_keep_spaces_and_shared_synonyms(tmp_path):
    path = write(tmp_path, '# an original query list\n#! verbatim\n0:sky,bed\n1:"wood "\n2:bed\n')
    vocab = parse_vocabulary_file(path)
    assert vocab.verbatim and vocab.classes == (('sky', 'bed'), ('wood ',), ('bed',))
    assert vocab.synonym_to_class == [0, 0, 1, 2]
    with pytest.raises(VocabularyError, match='two classes'):
        parse_vocabulary_file(write(tmp_path, '0:sky,bed\n1:bed\n', name='strict.txt'))
    # an original's list may name a class twice (FC-CLIP's ADE-847 has 'pot', 'bag', ... twice);
    # verbatim keeps both, a user list does not
    assert parse_vocabulary_file(write(tmp_path, '#! verbatim\n0:bed\n1:bed\n', name='dup.txt')).names \
        == ['bed', 'bed']
    with pytest.raises(VocabularyError, match='duplicate class'):
        parse_vocabulary_file(write(tmp_path, '0:bed\n1:bed\n', name='dup_user.txt'))
    assert Vocabulary((('a ',), ('b',)), verbatim=True).names == ['a ', 'b']
    assert Vocabulary((('a ',), ('b',))).names == ['a', 'b']
