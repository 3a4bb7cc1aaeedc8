"""Annotation loading for label maps mmseg's ``LoadAnnotations`` would corrupt."""
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform

from ovseg.registry import TRANSFORMS

from ..basesegdataset import UINT16_IGNORE_INDEX


def check_label_values(label: np.ndarray, num_classes: int, ignore_index: int, source: str) -> None:
    """Raise if ``label`` holds a value that is neither a class (0..K-1) nor the ignore index.

    Args:
        label (np.ndarray): integer label map (H, W).
        num_classes (int): number of classes K.
        ignore_index (int): the ignored value.
        source (str): file name quoted in the error.

    Raises:
        ValueError: naming ``source`` and the offending values.
    """
    values = np.unique(label)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.size:
        raise ValueError(
            f'{source}: label values {bad[:10].tolist()} are outside the {num_classes} classes '
            f'(0..{num_classes - 1}) and are not the ignore index {ignore_index}; the annotation '
            'does not match the dataset (wrong converter output, or the wrong dataset class)')


@TRANSFORMS.register_module()
class LoadUint16Annotations(BaseTransform):
    """Load a semantic label map keeping its integer type (8 or 16 bit); reject out-of-range labels.

    For datasets with more than 255 classes (ADE-847, PC-459: 16-bit PNG or TIFF, ignore 65535),
    where mmseg's ``LoadAnnotations`` casts to uint8 and turns label 300 into 44 and 65535 into 255.

    Required keys: ``seg_map_path``; optional ``label_map``, ``reduce_zero_label``, ``num_classes``,
    ``ignore_index`` (``CheckedSegDataset`` puts the last two into every data info).

    Added keys: ``gt_seg_map`` (np.uint16 (H, W), or np.uint8 for an 8-bit file), ``seg_fields``.

    Args:
        ignore_index (int): ignore value used when the data info has none. Default 65535.
        imdecode_backend (str): mmcv decoding backend; 'pillow' and 'cv2' both keep 16 bits.
            Default 'pillow'.
        backend_args (dict, optional): mmengine file backend arguments. Default None.
    """

    def __init__(self, ignore_index: int = UINT16_IGNORE_INDEX, imdecode_backend: str = 'pillow',
                 backend_args: Optional[dict] = None) -> None:
        self.ignore_index = ignore_index
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args.copy() if backend_args else None

    def _read(self, path: str) -> np.ndarray:
        """Decode ``path`` into an (H, W) uint8/uint16 array without any cast that loses values."""
        data = fileio.get(path, backend_args=self.backend_args)
        label = mmcv.imfrombytes(data, flag='unchanged', backend=self.imdecode_backend).squeeze()
        if label.ndim != 2:
            raise ValueError(
                f'{path}: expected a single-channel label map, got shape {label.shape}')
        if label.dtype in (np.uint8, np.uint16):
            return label
        if not np.issubdtype(label.dtype, np.integer) or label.min() < 0 or label.max() > 65535:
            raise ValueError(f'{path}: label map of type {label.dtype} does not fit 16 bits')
        return label.astype(np.uint16)

    def transform(self, results: dict) -> dict:
        """Load ``results['seg_map_path']`` into ``results['gt_seg_map']``.

        Args:
            results (dict): data info from the dataset.

        Returns:
            dict: ``results`` with ``gt_seg_map`` added and listed in ``seg_fields``.

        Raises:
            ValueError: a label outside the class range, a multi-channel file, or
                ``reduce_zero_label``.
        """
        path = results['seg_map_path']
        if results.get('reduce_zero_label'):
            raise ValueError(f'{path}: reduce_zero_label is not supported for 16-bit labels; the '
                             'converters already write 0-based labels with ignore 65535')
        label = self._read(path)
        ignore_index = results.get('ignore_index', self.ignore_index)
        if results.get('num_classes') is not None:
            check_label_values(label, results['num_classes'], ignore_index, path)
        label_map = results.get('label_map')
        if label_map:
            # a lookup table maps every value at once; unlisted values (the ignore index) keep
            # theirs
            table = np.arange(65536, dtype=np.uint16)
            for old, new in label_map.items():
                table[old] = new
            label = table[label]
        results['gt_seg_map'] = label
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(ignore_index={self.ignore_index}, '
                f"imdecode_backend='{self.imdecode_backend}', backend_args={self.backend_args})")
