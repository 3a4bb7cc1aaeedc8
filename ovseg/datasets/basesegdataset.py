"""Segmentation datasets that check their data root before loading.

mmseg's ``BaseSegDataset`` lists whatever it finds: a wrong ``data_root`` gives an ``os.scandir``
traceback or, worse, an empty dataset, and a missing annotation file only fails in the middle of a
run. The classes here fail at construction with a message that names the missing folder or file and
the step (download or converter) that creates it.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence

import mmengine.fileio as fileio
from mmseg.datasets import BaseSegDataset

# The ignore value of 16-bit label maps (ADE-847, PC-459), as written by detectron2's preparation
# scripts.
UINT16_IGNORE_INDEX = 65535


class CheckedSegDataset(BaseSegDataset):
    """``BaseSegDataset`` that raises a clear error for a missing or incomplete data root.

    Checks, in order: ``data_root`` exists; the image folder, the annotation folder and ``ann_file``
    (when given) exist; at least one image matched; every listed image and annotation file exists
    (local paths only, where the check is a cheap ``stat``). Each error names the missing path and
    ``PREPARE_HINT``.

    Every data info also carries ``num_classes`` (the class count of the annotation files, i.e. of
    the class-level ``METAINFO``) and ``ignore_index``, so a loader can reject out-of-range label
    values.

    Subclasses set ``PREPARE_HINT`` to the download / converter step that creates their layout.
    """

    PREPARE_HINT = 'see docs/datasets.md for the expected layout'

    def _missing(self, what: str, path: str) -> FileNotFoundError:
        """Error for a missing ``path`` (a folder or file described by ``what``), with the hint."""
        return FileNotFoundError(
            f'{type(self).__name__}: {what} not found: {path}. {self.PREPARE_HINT}')

    def _check_layout(self) -> None:
        """Raise FileNotFoundError for a missing data root, data folder or split file."""
        args = dict(backend_args=self.backend_args)
        if self.data_root and not fileio.isdir(self.data_root, **args):
            raise self._missing('data_root', self.data_root)
        folders = (('img_path', 'image folder'), ('seg_map_path', 'annotation folder'))
        for key, what in folders:
            path = self.data_prefix.get(key)
            if path and not fileio.isdir(path, **args):
                raise self._missing(f'{what} (data_prefix.{key})', path)
        if self.ann_file and not fileio.isfile(self.ann_file, **args):
            raise self._missing('split file (ann_file)', self.ann_file)

    def _check_files(self, data_list: List[dict]) -> None:
        """Raise FileNotFoundError for listed images or annotations that are missing."""
        if self.backend_args:
            return  # a remote stat per file would cost more than the load itself
        for key, what in (('img_path', 'image'), ('seg_map_path', 'annotation')):
            missing = [d[key] for d in data_list if key in d and not osp.isfile(d[key])]
            if missing:
                shown = ', '.join(missing[:3]) + (', ...' if len(missing) > 3 else '')
                raise FileNotFoundError(
                    f'{type(self).__name__}: {len(missing)} of {len(data_list)} {what} files are '
                    f'missing ({shown}); the data root is incomplete. {self.PREPARE_HINT}')

    def _list_samples(self) -> List[dict]:
        """The data infos before checks; mmseg's folder / split-file listing unless overridden."""
        return super().load_data_list()

    def load_data_list(self) -> List[dict]:
        """Check the layout, list the samples, and check that every listed file exists.

        Returns:
            list[dict]: mmseg data infos plus ``num_classes`` and ``ignore_index``.

        Raises:
            FileNotFoundError: missing data root, folder, split file or files, or no image matched.
        """
        self._check_layout()
        data_list = self._list_samples()
        if not data_list:
            where = self.ann_file or self.data_prefix.get('img_path', '')
            raise FileNotFoundError(
                f'{type(self).__name__}: no image matched (img_suffix={self.img_suffix!r}) in '
                f'{where}. {self.PREPARE_HINT}')
        self._check_files(data_list)
        num_classes = len(self.METAINFO['classes'])
        for info in data_list:
            info.update(num_classes=num_classes, ignore_index=self.ignore_index)
        return data_list


class Uint16SegDataset(CheckedSegDataset):
    """Checked dataset whose label maps are 16-bit (more than 255 classes), ignore index 65535.

    Load the annotations with ``LoadUint16Annotations``: mmseg's ``LoadAnnotations`` casts to uint8
    and corrupts every label >= 256 (and the ignore value). In training configs also set the data
    preprocessor's ``seg_pad_val`` and ``RandomCrop``'s ``ignore_index`` to 65535.

    Args:
        ignore_index (int): ignored label value. Default 65535.
        **kwargs: passed to ``BaseSegDataset``.
    """

    def __init__(self, ignore_index: int = UINT16_IGNORE_INDEX, **kwargs) -> None:
        super().__init__(ignore_index=ignore_index, **kwargs)

    @classmethod
    def get_label_map(cls, new_classes: Optional[Sequence] = None) -> Optional[Dict[int, int]]:
        """Map file labels to a subset of classes; dropped classes become 65535.

        mmseg marks dropped classes 255, which is a valid class here.

        Args:
            new_classes (Sequence[str], optional): class names to keep, a subset of ``METAINFO``.

        Returns:
            dict[int, int] | None: old label -> new label, or None when the classes are unchanged.
        """
        if super().get_label_map(new_classes) is None:  # also validates the subset
            return None
        new_classes = list(new_classes)
        return {
            i: new_classes.index(name) if name in new_classes else UINT16_IGNORE_INDEX
            for i, name in enumerate(cls.METAINFO['classes'])
        }
