"""MVTec AD test split: ``<root>/<category>/test/<defect>/*.png`` + ``ground_truth/<defect>/*_mask.png``."""
import os
import os.path as osp

from mmseg.datasets import BaseSegDataset

from ovseg.registry import DATASETS
from .references import attach_references, mvtec_normal_train

MVTEC_CATEGORIES = ('bottle', 'cable', 'capsule', 'carpet', 'grid', 'hazelnut', 'leather', 'metal_nut',
                    'pill', 'screw', 'tile', 'toothbrush', 'transistor', 'wood', 'zipper')
ANOMALY_METAINFO = dict(classes=('normal', 'anomalous'), palette=[[0, 0, 0], [255, 0, 0]])
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def anomaly_info(img_path, mask_path, category, defect):
    """One data info of an anomaly dataset (``seg_map_path`` None for a normal image)."""
    return dict(img_path=img_path, seg_map_path=mask_path, category=category, defect=defect,
                anomaly_label=int(mask_path is not None), label_map=None, reduce_zero_label=False,
                seg_fields=[])


@DATASETS.register_module()
class MVTecADDataset(BaseSegDataset):
    """MVTec AD (and datasets in its layout: MVTec LOCO, BTAD, MPDD) test images with masks.

    Layout::

        <data_root>/<category>/test/good/000.png                    normal
        <data_root>/<category>/test/<defect>/000.png                anomalous
        <data_root>/<category>/ground_truth/<defect>/000_mask.png   its mask (nonzero = anomalous)

    Every data info carries ``category``, ``defect`` and ``anomaly_label`` (0 normal, 1 anomalous);
    images are listed by category, defect and file name. Load masks with ``LoadAnomalyMask`` (a normal
    image gets an all-zero mask) and pack ``category`` and ``anomaly_label`` into the metainfo.

    Args:
        data_root (str): the MVTec AD folder.
        categories (Sequence[str], optional): categories to load; default every folder with ``test/``.
        normal_dir (str): defect folder of normal images. Default 'good'.
        mask_suffix (str): mask file name = image stem + suffix. Default '_mask.png'.
        references (dict, optional): few-shot normal references of each category, drawn from
            ``<category>/train/<normal_dir>``: ``dict(k_shot=1, seed=0, draw='shuffle')``; every data info
            then holds their paths as ``reference_paths`` (see :mod:`.references`). Default None.
        **kwargs: ``BaseSegDataset`` arguments (pipeline, ...).

    Raises:
        FileNotFoundError: missing data root, category, ``test`` folder, ground-truth folder or mask;
            no image found.
    """

    METAINFO = ANOMALY_METAINFO

    def __init__(self, data_root, categories=None, normal_dir='good', mask_suffix='_mask.png', references=None,
                 **kwargs):
        self.categories = tuple(categories) if categories is not None else None
        self.references = references
        self.normal_dir = normal_dir
        self.mask_suffix = mask_suffix
        kwargs.setdefault('img_suffix', '.png')
        kwargs.setdefault('seg_map_suffix', mask_suffix)
        super().__init__(data_root=data_root, **kwargs)

    def _missing(self, what, path):
        return FileNotFoundError(f'{type(self).__name__}: {what} not found: {path} (expected '
                                 f'<root>/<category>/test/<defect>/*.png and '
                                 f'<root>/<category>/ground_truth/<defect>/*{self.mask_suffix})')

    def _category_list(self):
        if not osp.isdir(self.data_root or ''):
            raise self._missing('data_root', self.data_root)
        if self.categories is not None:
            return self.categories
        found = sorted(d for d in os.listdir(self.data_root)
                       if osp.isdir(osp.join(self.data_root, d, 'test')))
        if not found:
            raise self._missing('category folders with a test/ subfolder', self.data_root)
        return tuple(found)

    def _category_infos(self, category):
        test_dir = osp.join(self.data_root, category, 'test')
        if not osp.isdir(test_dir):
            raise self._missing(f'test folder of category {category!r}', test_dir)
        infos = []
        for defect in sorted(os.listdir(test_dir)):
            folder = osp.join(test_dir, defect)
            if not osp.isdir(folder):
                continue
            gt_dir = osp.join(self.data_root, category, 'ground_truth', defect)
            if defect != self.normal_dir and not osp.isdir(gt_dir):
                raise self._missing(f'ground-truth folder of {category}/{defect}', gt_dir)
            for name in sorted(os.listdir(folder)):
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                mask = None
                if defect != self.normal_dir:
                    mask = osp.join(gt_dir, osp.splitext(name)[0] + self.mask_suffix)
                    if not osp.isfile(mask):
                        raise self._missing(f'mask of {category}/test/{defect}/{name}', mask)
                infos.append(anomaly_info(osp.join(folder, name), mask, category, defect))
        if not infos:
            raise self._missing(f'test images of category {category!r}', test_dir)
        return infos

    def load_data_list(self):
        """Data infos of every test image of the selected categories."""
        infos = [info for category in self._category_list() for info in self._category_infos(category)]
        if self.references is not None:
            attach_references(infos, lambda c: mvtec_normal_train(self.data_root, c, self.normal_dir),
                              self.references)
        return infos
