"""Vocabularies: ordered classes, each with one or more synonyms (plain Python, no torch).

A vocabulary is a tuple of classes; a class is a tuple of synonyms whose first entry is its display
name. Text classifiers embed every synonym and score a class by the maximum over its synonyms.

Built-in vocabularies live in ``vocabularies/<name>.txt``, one class per line in label-id order::

    # source: repository@commit path (the header names where the list comes from)
    0:wall,walls,brick wall,stone wall,interior wall
    1:building,buildings,edifice,edifices

The synonym-rich lists at the top level (``ade150``, ``voc21``, ...) are ovseg's general-purpose
vocabularies. The lists an original publication evaluates with live in one folder per method
(``fcclip/ade150``, ``clip_dinoiser/voc21``, ``maskclip/pc59``, ...) and are copied verbatim: a file
whose header holds the line ``#! verbatim`` keeps its source's repeats (a prompt twice in one class, or
in two classes), which the checks below otherwise refuse.

User vocabularies are lists (``['cat', 'person|man|woman']`` or ``[['cat'], ['person', 'man']]``)
or one comma-separated string (``'cat, dog, person|man'``), with ``|`` between synonyms of a class.

**Verbatim files** reproduce an original's class-name file query by query. A header line ``#! verbatim``
makes the vocabulary *verbatim*: names are kept exactly as written (a name in
double quotes keeps its spaces, e.g. ``59:"wood "`` for the trailing space of SCLIP's
``cls_context60.txt``), and one synonym may name two classes (SCLIP's COCO-Object lists 'bed' in its
background line and as a class).
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Optional

VOCABULARY_DIR = Path(__file__).resolve().parent / 'vocabularies'

# Stuff names SCLIP / ClearCLIP give the 'background' class of VOC-21 and COCO-Object (first line
# of their ``configs/cls_voc21.txt``); their spelling and order are kept ('sands' included).
BACKGROUND_STUFF = (
    'sky', 'wall', 'tree', 'wood', 'grass', 'road', 'sea', 'river', 'mountain', 'sands', 'desk',
    'bed', 'building', 'cloud', 'lamp', 'door', 'window', 'wardrobe', 'ceiling', 'shelf', 'curtain',
    'stair', 'floor', 'hill', 'rail', 'fence',
)

# Extra spellings of built-in names. Case, spaces, '-' and '_' are ignored when matching, so
# 'ADE-150' and 'coco-stuff-171' need no entry here.
_ALIASES = MappingProxyType({
    'ade20k': 'ade150', 'ade20k150': 'ade150', 'ade20kfull': 'ade847', 'ade20k847': 'ade847',
    'voc': 'voc21', 'pascalvoc': 'voc21', 'pascalvoc21': 'voc21', 'pascalvoc20': 'voc20',
    'pascalcontext': 'pc60', 'pascalcontext60': 'pc60', 'context60': 'pc60',
    'pascalcontext59': 'pc59', 'context59': 'pc59',
    'pascalcontext459': 'pc459', 'context459': 'pc459',
    'cocostuff': 'coco_stuff171', 'cocoobject': 'coco_object81', 'cityscapes': 'cityscapes19',
    # FC-CLIP's training list is the top-level file (already verbatim, without repeats)
    'fcclip/cocopanoptic133': 'coco_panoptic133',
})


class VocabularyError(ValueError):
    """An invalid or unknown vocabulary; the message names the problem and where it is."""


def _check_names(classes, where):
    """Check within-class duplicates; ``where[k]`` says where class k came from."""
    for k, cls in enumerate(classes):
        seen = set()
        for s in cls:
            if s.lower() in seen:
                raise VocabularyError(
                    f'class {cls[0]!r} at {where[k]} lists the synonym {s!r} twice')
            seen.add(s.lower())


def _check_unique(classes, where, shared_synonyms=False):
    """Check that class names are unique and that no synonym is in two classes (any case)."""
    positions = {}
    for k, cls in enumerate(classes):
        positions.setdefault(cls[0].lower(), []).append(k)
    repeated = [ks for ks in positions.values() if len(ks) > 1]
    if repeated:
        details = '; '.join(f'{classes[ks[0]][0]!r} at ' + ' and '.join(where[k] for k in ks)
                            for ks in repeated)
        raise VocabularyError(f'duplicate class: {details}')
    if shared_synonyms:
        return
    owner = {}
    for k, cls in enumerate(classes):
        for s in cls:
            j = owner.setdefault(s.lower(), k)
            if j != k:
                raise VocabularyError(
                    f'synonym {s!r} is in two classes: {classes[j][0]!r} at {where[j]} and '
                    f'{cls[0]!r} at {where[k]}; a synonym may name only one class')


def _check_present(classes, where):
    """At least one class; no empty class name or synonym."""
    if not classes:
        raise VocabularyError('empty vocabulary: give at least one class')
    for k, cls in enumerate(classes):
        if not any(cls):
            raise VocabularyError(f'empty class name at {where[k]}')
        if not all(cls):
            raise VocabularyError(f'empty synonym in class at {where[k]}: {list(cls)}')


def _validate(classes, where=None, verbatim=False):
    """Run the vocabulary checks (only :func:`_check_present` when ``verbatim``); ``where`` labels
    classes in messages (default 'position k')."""
    where = where or [f'position {k}' for k in range(len(classes))]
    _check_present(classes, where)
    if not verbatim:
        _check_names(classes, where)
        _check_unique(classes, where)


def _as_synonyms(item, label, strip=True):
    """One class given as a tuple/list of strings -> tuple of (stripped) strings."""
    if isinstance(item, str) or not isinstance(item, (tuple, list)):
        raise VocabularyError(
            f'class at {label} must be a tuple of synonym strings, got {item!r}')
    for s in item:
        if not isinstance(s, str):
            raise VocabularyError(f'synonyms must be strings; class at {label} has {s!r}')
    return tuple(s.strip() if strip else s for s in item)


@dataclass(frozen=True, repr=False)
class Vocabulary:
    """An ordered, validated set of classes with synonyms.

    Construction strips every name and checks the vocabulary: at least one class, no empty name,
    no class name twice (case-insensitive), no synonym in two classes or twice in one class. A
    ``verbatim`` vocabulary (an original publication's list, copied as it is) keeps only the first two
    checks: its repeats are part of what the original computes (each repeated prompt is embedded again,
    and a synonym shared by two classes gives both the same score).

    Attributes:
        classes (tuple[tuple[str, ...], ...]): synonyms per class; the first is the display name.
        name (str, optional): built-in name such as 'ade150'; None for user vocabularies.
        verbatim (bool): names kept exactly as written (no stripping) and repeats allowed (see above).
            Default False.
        source (str, optional): where the list comes from (a built-in file's header comment).

    Raises:
        VocabularyError: on any failed check, naming the offending class and its position.
    """

    classes: tuple[tuple[str, ...], ...]
    name: Optional[str] = None
    verbatim: bool = False
    source: Optional[str] = field(default=None, compare=False)

    def __post_init__(self):
        if isinstance(self.classes, str) or not isinstance(self.classes, (tuple, list)):
            raise VocabularyError(f'classes must be a tuple of synonym tuples, got '
                                  f'{self.classes!r}; use load_vocabulary() for strings')
        classes = tuple(_as_synonyms(c, f'position {k}', not self.verbatim) for k, c in enumerate(self.classes))
        _validate(classes, verbatim=self.verbatim)
        object.__setattr__(self, 'classes', classes)

    def __len__(self):
        return len(self.classes)

    def __repr__(self):
        shown = ', '.join(repr(n) for n in self.names[:6]) + (', ...' if len(self) > 6 else '')
        return f'Vocabulary(name={self.name!r}, num_classes={len(self)}, names=[{shown}])'

    @property
    def names(self):
        """list[str]: display name (first synonym) of each class."""
        return [cls[0] for cls in self.classes]

    @property
    def synonyms(self):
        """list[str]: every synonym, class by class."""
        return [s for cls in self.classes for s in cls]

    @property
    def synonym_to_class(self):
        """list[int]: class index of each entry of :attr:`synonyms`."""
        return [k for k, cls in enumerate(self.classes) for _ in cls]

    def with_class_synonyms(self, index, synonyms, drop_conflicts=True):
        """Return a copy whose class ``index`` has new synonyms (e.g. stuff names for background).

        Args:
            index (int): class index; negative values count from the end.
            synonyms (str | Sequence[str]): the new synonyms; a string is split on '|'. The first
                becomes the display name.
            drop_conflicts (bool): leave out given synonyms that already name another class (e.g.
                'bed' of :data:`BACKGROUND_STUFF` in COCO-Object) instead of raising. Default True.

        Returns:
            Vocabulary: the new vocabulary, with the same ``name``.

        Raises:
            VocabularyError: index out of range, no synonym left, or a clash with another class.
        """
        if not -len(self) <= index < len(self):
            raise VocabularyError(f'class index {index} out of range for {len(self)} classes')
        k = index % len(self)
        if isinstance(synonyms, str):
            synonyms = synonyms.split('|')
        new = _as_synonyms(synonyms, f'index {index}', not self.verbatim)
        if drop_conflicts:
            taken = {s.lower() for j, cls in enumerate(self.classes) if j != k for s in cls}
            kept = tuple(s for s in new if s.lower() not in taken)
            if new and not kept:
                raise VocabularyError(f'every synonym in {list(new)} already names another class')
            new = kept
        return Vocabulary(self.classes[:k] + (new,) + self.classes[k + 1:], name=self.name,
                          verbatim=self.verbatim, source=self.source)


def _norm_key(text):
    """Matching key of a vocabulary name: lower case without spaces, '-' and '_'."""
    return re.sub(r'[\s_\-]+', '', text.lower())


def available_vocabularies():
    """Names of the built-in vocabularies, sorted: the general ones and, with their method's folder as
    prefix, the lists of an original publication.

    Returns:
        list[str]: e.g. ['ade150', 'ade847', ..., 'clip_dinoiser/ade150', ..., 'fcclip/voc21', ...].
    """
    return sorted(p.relative_to(VOCABULARY_DIR).with_suffix('').as_posix()
                  for p in VOCABULARY_DIR.rglob('*.txt'))


def _builtin_name(text):
    """Built-in name matching ``text`` (any case, '-', '_', spaces, known aliases) or None."""
    known = {_norm_key(n): n for n in available_vocabularies()}
    key = _norm_key(text)
    if key in known:
        return known[key]
    alias = _ALIASES.get(key)
    return alias if alias in known.values() else None


def _name(piece, verbatim):
    """One comma-separated piece -> the name: stripped, or (verbatim) the text inside double quotes."""
    piece = piece.strip()
    if verbatim and len(piece) >= 2 and piece[0] == piece[-1] == '"':
        return piece[1:-1]
    return piece


def _parse_line(line, expected_id, location, verbatim=False):
    """'id:name,synonym,...' -> tuple of names; ``location`` prefixes error messages."""
    head, sep, rest = line.partition(':')
    if not sep:
        raise VocabularyError(f'{location}: expected "id:name[,synonym...]", got {line!r}')
    try:
        class_id = int(head.strip())
    except ValueError:
        raise VocabularyError(f'{location}: class id {head.strip()!r} is not an integer') from None
    if class_id != expected_id:
        raise VocabularyError(f'{location}: class id {class_id} where {expected_id} was expected '
                              '(ids must be 0..K-1 in order)')
    names = tuple(_name(s, verbatim) for s in rest.split(','))
    if not any(names):
        raise VocabularyError(f'{location}: empty class name')
    if not all(names):
        raise VocabularyError(f'{location}: empty synonym in {rest.strip()!r}')
    return names


def parse_vocabulary_file(path, name=None):
    """Read a vocabulary file: one 'id:name,synonym,...' line per class, ids 0..K-1 in order.

    Blank lines and lines starting with '#' are skipped; the '#' lines before the first class are the
    header (kept as ``source``), and a header line ``#! verbatim`` makes a :attr:`Vocabulary.verbatim`
    vocabulary.

    Args:
        path (str | os.PathLike): the .txt file (UTF-8).
        name (str, optional): name stored in the vocabulary. Default None.

    Returns:
        Vocabulary: the parsed vocabulary.

    Raises:
        VocabularyError: unreadable file, or a bad line (the message gives file and line number).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as err:
        raise VocabularyError(f'cannot read vocabulary file {path}: {err}') from err
    classes, where, header, verbatim = [], [], [], False
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line.startswith('#!'):
            verbatim = verbatim or line[2:].strip() == 'verbatim'
            continue
        if line.startswith('#') and not classes:
            header.append(line[1:].strip())
        if not line or line.startswith('#'):
            continue
        where.append(f'{path}:{lineno}')
        classes.append(_parse_line(line, len(classes), where[-1], verbatim))
    if not classes:
        raise VocabularyError(f'{path}: empty vocabulary (no "id:name" lines)')
    _validate(classes, where, verbatim)
    return Vocabulary(tuple(classes), name=name, verbatim=verbatim, source=' '.join(header) or None)


def _from_sequence(items):
    """List of classes (strings with '|' between synonyms, or lists of strings) -> Vocabulary."""
    if not items:
        raise VocabularyError('empty vocabulary: give at least one class')
    classes = []
    for k, item in enumerate(items):
        if isinstance(item, str):
            item = item.split('|')
        elif not isinstance(item, (list, tuple)):
            raise VocabularyError(f'class at position {k} must be a string or a list of strings, '
                                  f'got {type(item).__name__}: {item!r}')
        classes.append(_as_synonyms(tuple(item), f'position {k}'))
    return Vocabulary(tuple(classes))


def _from_string(spec):
    """Built-in name, file path, or comma-separated user vocabulary -> Vocabulary."""
    text = spec.strip()
    if not text:
        raise VocabularyError('empty vocabulary: got an empty string')
    builtin = _builtin_name(text)
    if builtin is not None:
        return parse_vocabulary_file(VOCABULARY_DIR / f'{builtin}.txt', name=builtin)
    path = os.path.expanduser(text)
    if os.path.isfile(path):
        return parse_vocabulary_file(path)
    if text.lower().endswith('.txt'):
        raise VocabularyError(f'vocabulary file not found: {text}')
    if ',' in text:
        return _from_sequence(text.split(','))
    raise VocabularyError(
        f'unknown vocabulary {text!r}: not a built-in name '
        f'({", ".join(available_vocabularies())}) and not an existing file; pass a list, '
        f'e.g. [{text!r}], for a one-class user vocabulary, or separate classes with commas '
        "('cat, dog, person|man')")


def load_vocabulary(spec):
    """Turn any supported vocabulary specification into a :class:`Vocabulary`.

    Args:
        spec: one of

            - a :class:`Vocabulary` (returned as is);
            - a built-in name such as 'ade150' (case, '-', '_' and spaces ignored, so 'ADE-150'
              and 'coco-stuff-171' work; aliases such as 'ade20k' or 'cityscapes' too);
            - a path (str or os.PathLike) to a vocabulary .txt file;
            - a list/tuple of classes, each a string ('person|man|woman') or a list of synonyms;
            - a string with commas: comma-separated classes, '|' between synonyms
              ('cat, dog, person|man').

    Returns:
        Vocabulary: the vocabulary; names are stripped, their case kept.

    Raises:
        VocabularyError: unknown name (a bare string without commas that is neither a built-in
            name nor a file), empty vocabulary, empty class name, duplicate class, or a synonym
            in two classes.
    """
    if isinstance(spec, Vocabulary):
        return spec
    if isinstance(spec, os.PathLike):
        return parse_vocabulary_file(spec)
    if isinstance(spec, str):
        return _from_string(spec)
    if isinstance(spec, (list, tuple)):
        return _from_sequence(spec)
    raise VocabularyError(f'cannot make a vocabulary from {type(spec).__name__}: {spec!r}; give '
                          'a name, a file path, a list of classes or a comma-separated string')
