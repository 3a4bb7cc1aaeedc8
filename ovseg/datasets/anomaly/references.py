"""Normal reference images of few-shot anomaly methods, drawn from a dataset's normal training images.

Few-shot methods score each test image of a category against k normal images of that category. The
protocols draw them from the training split (MVTec AD ``<category>/train/good``, VisA rows with split
``train`` and label ``normal``), seeded, with the draw rule of the method's original code:

- ``'shuffle'`` (anomalib's WinCLIP: the first k images of its seeded, shuffled training loader): the first
  k of a seeded random permutation of the sorted candidates, so k distinct images, and the k-shot set
  contains the (k - 1)-shot set. anomalib's own permutation also depends on how much of its global random
  stream ran before (Lightning seeds it once for the whole run); the exact images it picks are not
  reproduced, only the rule.
- ``'randint'`` (AdaptCLIP's ``PromptDataset``): ``torch.manual_seed(seed)`` then
  ``torch.randint(0, n, (k,))`` per category over its normal training images, in the order of the
  ``meta.json`` the original builds (sorted file names for MVTec AD, CSV order for VisA). Draws are with
  replacement, as in the original, so an image may be used twice. This reproduces the original's choice.

A dataset built with ``references=dict(k_shot=..., seed=..., draw=...)`` puts the chosen paths of each
image's category into its data info as ``reference_paths`` (a tuple); with ``k_shot=None`` it puts all of
the category's normal training images there (a pool, from which training picks one at random).
"""
import os
import os.path as osp

import torch

DRAWS = ('shuffle', 'randint')


def draw_references(candidates, k_shot, seed=0, draw='shuffle'):
    """k paths of ``candidates`` (a list in the dataset's canonical order) by the ``draw`` rule.

    Args:
        candidates (Sequence[str]): the category's normal training images.
        k_shot (int | None): number of references; None returns every candidate.
        seed (int): seed of the draw (per category, as the originals reseed). Default 0.
        draw (str): 'shuffle' (without replacement) or 'randint' (with replacement). Default 'shuffle'.

    Returns:
        tuple[str, ...]

    Raises:
        ValueError: unknown rule, k < 1, no candidates, or more references than candidates ('shuffle').
    """
    candidates = list(candidates)
    if draw not in DRAWS:
        raise ValueError(f'unknown reference draw {draw!r}; choose one of {DRAWS}')
    if not candidates:
        raise ValueError('no normal training image to draw references from')
    if k_shot is None:
        return tuple(candidates)
    k_shot = int(k_shot)
    if k_shot < 1:
        raise ValueError(f'k_shot must be >= 1 (or None for all normal images), got {k_shot}')
    generator = torch.Generator().manual_seed(int(seed))
    if draw == 'randint':
        index = torch.randint(0, len(candidates), (k_shot,), generator=generator)
    else:
        if k_shot > len(candidates):
            raise ValueError(f'{k_shot} references requested but only {len(candidates)} normal training '
                             f'images exist')
        index = torch.randperm(len(candidates), generator=generator)[:k_shot]
    return tuple(candidates[i] for i in index.tolist())


def mvtec_normal_train(data_root, category, normal_dir='good', extensions=('.png', '.jpg', '.jpeg', '.bmp')):
    """Sorted normal training images ``<data_root>/<category>/train/<normal_dir>/*``.

    Raises:
        FileNotFoundError: the folder is missing or holds no image.
    """
    folder = osp.join(data_root, category, 'train', normal_dir)
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(extensions)) if osp.isdir(folder) else []
    if not names:
        raise FileNotFoundError(f'few-shot references: no normal training image in {folder} (expected '
                                f'<root>/<category>/train/{normal_dir}/*.png)')
    return [osp.join(folder, n) for n in names]


def attach_references(infos, candidates_of, spec):
    """Put ``reference_paths`` into every data info (in place) from ``spec`` = dict(k_shot, seed, draw).

    Args:
        infos (list[dict]): data infos with a ``category``.
        candidates_of (callable): category -> list of its normal training images.
        spec (dict): ``k_shot`` (int or None for all), ``seed`` (default 0), ``draw`` (default 'shuffle').
    """
    spec = dict(spec)
    unknown = set(spec) - {'k_shot', 'seed', 'draw'}
    if unknown:
        raise ValueError(f'references: unknown keys {sorted(unknown)}; expected k_shot, seed, draw')
    chosen = {}
    for info in infos:
        category = info['category']
        if category not in chosen:
            try:
                chosen[category] = draw_references(candidates_of(category), spec.get('k_shot'),
                                                   spec.get('seed', 0), spec.get('draw', 'shuffle'))
            except ValueError as err:
                raise ValueError(f'references of category {category!r}: {err}') from None
        info['reference_paths'] = chosen[category]
    return infos
