"""Panoptic ground truth in data samples: segment-id maps loaded from a second path, and packing.

mmseg's ``PackSegInputs`` packs only the semantic map; panoptic metrics and mask-classification
training also need the segment-id map and its ``segments_info``.
"""
from typing import Optional, Sequence

import mmcv
import mmengine.fileio as fileio
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs

from ovseg.registry import TRANSFORMS

from .panoptic import rgb_to_panoptic_id

PANOPTIC_META_KEYS = ('img_path', 'seg_map_path', 'ori_shape', 'img_shape', 'pad_shape', 'scale_factor',
                      'flip', 'flip_direction', 'reduce_zero_label', 'pan_map_path', 'segments_info',
                      'img_id')


@TRANSFORMS.register_module()
class LoadPanopticSegIds(BaseTransform):
    """Load a COCO-format panoptic PNG into ``gt_panoptic_seg`` only (the semantic map stays as is).

    For datasets whose semantic ground truth is a separate file (ADE20K panoptic: ``seg_map_path``
    is the ADE semantic PNG, ``pan_map_path`` the panoptic PNG), so that mmseg's ``LoadAnnotations``
    loads the semantic map and this transform the segments. ``gt_panoptic_seg`` is added to
    ``seg_fields``, so mmseg's ``Resize``, ``RandomCrop`` and ``RandomFlip`` keep it aligned.

    Required keys: ``path_key`` (default ``pan_map_path``), ``segments_info`` (``id`` per segment).
    Added keys: ``gt_panoptic_seg`` (np.int32 (H, W), segment id = R + 256·G + 256²·B, 0 void).

    Args:
        path_key (str): results key of the PNG path. Default 'pan_map_path'.
        imdecode_backend (str): mmcv decoding backend. Default 'pillow'.
        backend_args (dict, optional): mmengine file backend arguments. Default None.

    Raises:
        ValueError: the PNG holds a segment id that ``segments_info`` does not list.
    """

    def __init__(self, path_key: str = 'pan_map_path', imdecode_backend: str = 'pillow',
                 backend_args: Optional[dict] = None) -> None:
        self.path_key = path_key
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args.copy() if backend_args else None

    def transform(self, results: dict) -> dict:
        path = results[self.path_key]
        rgb = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args), flag='color',
                               channel_order='rgb', backend=self.imdecode_backend)
        ids = rgb_to_panoptic_id(rgb)
        listed = {int(s['id']) for s in results['segments_info']} | {0}
        unknown = sorted(set(np.unique(ids).tolist()) - listed)
        if unknown:
            raise ValueError(f'{path}: segment ids {unknown[:10]} are in the PNG but not in its '
                             'segments_info; the PNG and the JSON do not belong together')
        results['gt_panoptic_seg'] = ids.astype(np.int32)
        results.setdefault('seg_fields', []).append('gt_panoptic_seg')
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(path_key='{self.path_key}', "
                f"imdecode_backend='{self.imdecode_backend}', backend_args={self.backend_args})")


@TRANSFORMS.register_module()
class PackPanopticInputs(PackSegInputs):
    """``PackSegInputs`` that also packs the panoptic ground truth.

    Adds ``data_sample.gt_panoptic_seg`` (``PixelData``, (1, H, W) int32 segment ids) when
    ``gt_panoptic_seg`` is in the results, and by default keeps ``segments_info`` (ground-truth
    segments: ``id``, ``label``, ``iscrowd``, ``isthing``), ``pan_map_path`` and ``img_id`` in the
    metainfo. The panoptic map is not padded: consumers pad at the bottom / right as the images are
    (FC-CLIP's training targets do), so a ``Pad`` before packing may leave it smaller than the image.

    Args:
        meta_keys (Sequence[str]): metainfo keys. Default: mmseg's keys plus ``pan_map_path``,
            ``segments_info`` and ``img_id``.
    """

    def __init__(self, meta_keys: Sequence[str] = PANOPTIC_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        if 'gt_panoptic_seg' in results:
            ids = np.ascontiguousarray(results['gt_panoptic_seg'], dtype=np.int32)
            packed['data_samples'].gt_panoptic_seg = PixelData(data=torch.from_numpy(ids[None]))
        return packed
