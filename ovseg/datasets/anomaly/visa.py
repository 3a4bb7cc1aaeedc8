"""VisA test split from its split CSV (``split_csv/1cls.csv``: object, split, label, image, mask)."""
import csv
import os.path as osp

from mmseg.datasets import BaseSegDataset

from ovseg.registry import DATASETS
from .mvtec import ANOMALY_METAINFO, anomaly_info
from .references import attach_references

VISA_CATEGORIES = ('candle', 'capsules', 'cashew', 'chewinggum', 'fryum', 'macaroni1', 'macaroni2', 'pcb1',
                   'pcb2', 'pcb3', 'pcb4', 'pipe_fryum')
CSV_COLUMNS = ('object', 'split', 'label', 'image', 'mask')


@DATASETS.register_module()
class VisADataset(BaseSegDataset):
    """VisA images of one split as listed by the official split CSV (paths relative to ``data_root``).

    Rows with label 'normal' get an all-zero mask; other rows need their mask file (VisA masks hold 0
    and 255 or 0 and 1: ``LoadAnomalyMask`` treats any nonzero value as anomalous). Data infos carry
    ``category`` (the CSV's object), ``defect`` (its label) and ``anomaly_label``; rows keep the CSV's
    order within each category, categories are listed in sorted order.

    Args:
        data_root (str): the VisA folder (``VisA_20220922``).
        split_csv (str): CSV path relative to ``data_root`` (or absolute). Default 'split_csv/1cls.csv'.
        split (str): 'test' (default) or 'train'.
        categories (Sequence[str], optional): objects to keep; default all in the CSV.
        references (dict, optional): few-shot normal references of each category, drawn from the CSV's
            ``train`` rows labelled ``normal`` (CSV order): ``dict(k_shot=1, seed=0, draw='shuffle')``; every
            data info then holds their paths as ``reference_paths`` (see :mod:`.references`). Default None.
        **kwargs: ``BaseSegDataset`` arguments.

    Raises:
        FileNotFoundError: missing data root, CSV, image or mask.
        ValueError: the CSV lacks a column, or no row matches the split and categories.
    """

    METAINFO = ANOMALY_METAINFO

    def __init__(self, data_root, split_csv='split_csv/1cls.csv', split='test', categories=None, references=None,
                 **kwargs):
        self.split_csv, self.split = split_csv, split
        self.references = references
        self.categories = tuple(categories) if categories is not None else None
        kwargs.setdefault('img_suffix', '.JPG')
        super().__init__(data_root=data_root, **kwargs)

    def _csv_rows(self):
        """Every row of the split CSV (checked columns)."""
        if not osp.isdir(self.data_root or ''):
            raise FileNotFoundError(f'VisADataset: data_root not found: {self.data_root}')
        path = self.split_csv if osp.isabs(self.split_csv) else osp.join(self.data_root, self.split_csv)
        if not osp.isfile(path):
            raise FileNotFoundError(f'VisADataset: split CSV not found: {path} (VisA ships '
                                    f'split_csv/1cls.csv)')
        with open(path, newline='', encoding='utf-8') as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError(f'VisADataset: {path} lacks columns {missing}; expected {CSV_COLUMNS}')
            return path, list(reader)

    def _rows(self):
        path, rows = self._csv_rows()
        rows = [r for r in rows if r['split'].strip() == self.split
                and (self.categories is None or r['object'].strip() in self.categories)]
        if not rows:
            raise ValueError(f'VisADataset: no {self.split!r} rows for categories {self.categories} in '
                             f'{path}')
        return rows

    def _info(self, row):
        category, label = row['object'].strip(), row['label'].strip()
        image = osp.join(self.data_root, row['image'].strip())
        if not osp.isfile(image):
            raise FileNotFoundError(f'VisADataset: image not found: {image}')
        mask = None
        if label != 'normal':
            if not (row['mask'] or '').strip():
                raise FileNotFoundError(f"VisADataset: anomalous image {row['image']} has no mask in the CSV")
            mask = osp.join(self.data_root, row['mask'].strip())
            if not osp.isfile(mask):
                raise FileNotFoundError(f'VisADataset: mask not found: {mask}')
        return anomaly_info(image, mask, category, label)

    def load_data_list(self):
        """Data infos of the split's rows, grouped by category (sorted)."""
        infos = [self._info(row) for row in self._rows()]
        order = {c: i for i, c in enumerate(sorted({info['category'] for info in infos}))}
        infos = sorted(infos, key=lambda info: order[info['category']])  # stable: CSV order inside a category
        if self.references is not None:
            attach_references(infos, self.normal_train_images, self.references)
        return infos

    def normal_train_images(self, category):
        """Paths of the CSV's ``train`` rows of ``category`` labelled ``normal``, in CSV order."""
        path, rows = self._csv_rows()
        images = [osp.join(self.data_root, r['image'].strip()) for r in rows if r['split'].strip() == 'train'
                  and r['label'].strip() == 'normal' and r['object'].strip() == category]
        if not images:
            raise FileNotFoundError(f'few-shot references: {path} lists no normal train image of {category!r}')
        return images
