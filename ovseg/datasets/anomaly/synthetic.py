"""Generated MVTec AD / VisA layouts from scikit-image textures with pasted defects (tests, benchmarks).

Each image is a random crop of a grey scikit-image texture (``brick``, ``grass``, ``gravel``, ...)
stacked to RGB; an anomalous image gets one elliptical defect (random size 8-18 % of the side, random
position and rotation) whose pixels become a bright, low-contrast version of the texture
(255 - v / 4: a stain), and a mask of exactly those pixels (0/255 MVTec-style, 0/1 VisA-style).
"""
import csv
import os.path as osp

import numpy as np
from PIL import Image

TEXTURES = ('brick', 'grass', 'gravel')


def _texture(name):
    import skimage.data  # optional dependency, imported only here
    image = getattr(skimage.data, name)()
    return image if image.ndim == 2 else image.mean(axis=-1).astype(np.uint8)


def synthetic_sample(texture, size, rng, defect):
    """One (size, size, 3) uint8 image and its (size, size) bool mask (all False without defect)."""
    top, left = (int(rng.integers(0, s - size + 1)) for s in texture.shape)
    image = texture[top:top + size, left:left + size].copy()
    mask = np.zeros((size, size), dtype=bool)
    if defect:
        from skimage.draw import ellipse
        radius = rng.uniform(0.08, 0.18, size=2) * size
        center = rng.uniform(0.25, 0.75, size=2) * size
        rows, cols = ellipse(center[0], center[1], radius[0], radius[1], shape=mask.shape,
                             rotation=float(rng.uniform(0, np.pi)))
        mask[rows, cols] = True
        image[mask] = 255 - image[mask] // 4
    return np.repeat(image[..., None], 3, axis=-1), mask


def make_mvtec_like(root, categories=TEXTURES, num_good=3, num_defect=3, size=96, defect='pasted',
                    seed=0, num_train=0):
    """Write ``<root>/<category>/test/{good,<defect>}/NNN.png`` and ``ground_truth/<defect>/NNN_mask.png``
    (and ``num_train`` normal images ``train/good/NNN.png``, the few-shot references' source).

    Returns:
        dict[str, list[np.ndarray]]: per category the masks in dataset order (good first).
    """
    rng = np.random.default_rng(seed)
    masks = {}
    for category in categories:
        texture = _texture(category)
        masks[category] = []
        for i in range(num_train):
            _save(synthetic_sample(texture, size, rng, False)[0], osp.join(root, category, 'train', 'good',
                                                                            f'{i:03d}.png'))
        for folder, count in (('good', num_good), (defect, num_defect)):
            for i in range(count):
                image, mask = synthetic_sample(texture, size, rng, folder != 'good')
                path = osp.join(root, category, 'test', folder, f'{i:03d}.png')
                _save(image, path)
                if folder != 'good':
                    _save(mask.astype(np.uint8) * 255, osp.join(root, category, 'ground_truth', folder,
                                                                 f'{i:03d}_mask.png'))
                masks[category].append(mask)
    return masks


def make_visa_like(root, categories=TEXTURES, num_good=3, num_defect=3, size=96, seed=0):
    """Write a VisA layout (``<category>/Data/Images/{Normal,Anomaly}``, ``Data/Masks/Anomaly``) and
    ``split_csv/1cls.csv`` (one normal train row per category plus the test rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for category in categories:
        texture = _texture(category)
        for split, label, count in (('train', 'normal', 1), ('test', 'normal', num_good),
                                    ('test', 'anomaly', num_defect)):
            for i in range(count):
                image, mask = synthetic_sample(texture, size, rng, label == 'anomaly')
                kind = 'Normal' if label == 'normal' else 'Anomaly'
                name = f'{split}{i:03d}'
                image_rel = f'{category}/Data/Images/{kind}/{name}.png'
                mask_rel = f'{category}/Data/Masks/Anomaly/{name}.png' if label == 'anomaly' else ''
                _save(image, osp.join(root, image_rel))
                if mask_rel:
                    _save(mask.astype(np.uint8), osp.join(root, mask_rel))  # VisA-style 0/1 mask
                rows.append(dict(object=category, split=split, label=label, image=image_rel, mask=mask_rel))
    path = osp.join(root, 'split_csv', '1cls.csv')
    _mkdir(path)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, fieldnames=['object', 'split', 'label', 'image', 'mask'])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _mkdir(path):
    import os
    os.makedirs(osp.dirname(path), exist_ok=True)


def _save(array, path):
    _mkdir(path)
    Image.fromarray(array).save(path)
