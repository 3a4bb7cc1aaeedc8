"""COCO panoptic annotations: PNG segment ids + ``segments_info`` -> semantic and instance data."""
from typing import Dict, List, Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform

from ovseg.registry import TRANSFORMS

SEMANTIC_IGNORE_INDEX = 255


def rgb_to_panoptic_id(rgb: np.ndarray) -> np.ndarray:
    """Decode a COCO panoptic PNG: segment id = R + 256·G + 256²·B (0 is void).

    Args:
        rgb (np.ndarray): (H, W, 3) uint8 in RGB order.

    Returns:
        np.ndarray: (H, W) int32 segment ids.
    """
    rgb = rgb.astype(np.int32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def panoptic_to_semantic(panoptic: np.ndarray, segments_info: List[dict], source: str,
                         label_map: Optional[Dict[int, int]] = None) -> np.ndarray:
    """Semantic label map of a panoptic segment-id map; void and unlisted classes become 255.

    Crowd segments keep their class, as in detectron2's semantic maps derived from COCO panoptic.

    Args:
        panoptic (np.ndarray): (H, W) segment ids, 0 void.
        segments_info (list[dict]): segments with ``id`` and ``label``.
        source (str): file name quoted in errors.
        label_map (dict[int, int], optional): class subset mapping applied to the labels.

    Returns:
        np.ndarray: (H, W) uint8 labels.

    Raises:
        ValueError: the map holds a segment id that ``segments_info`` does not list.
    """
    ids, inverse = np.unique(panoptic, return_inverse=True)
    label_of = {0: SEMANTIC_IGNORE_INDEX}
    for seg in segments_info:
        label = seg['label'] if label_map is None else label_map.get(seg['label'], seg['label'])
        label_of[seg['id']] = label
    unknown = [int(i) for i in ids if int(i) not in label_of]
    if unknown:
        raise ValueError(f'{source}: segment ids {unknown[:10]} are in the PNG but not in its '
                         'segments_info; the PNG and the JSON do not belong together')
    labels = np.array([label_of[int(i)] for i in ids], dtype=np.uint8)
    return labels[inverse.reshape(panoptic.shape)]


def panoptic_to_instances(panoptic: np.ndarray, segments_info: List[dict],
                          with_crowd: bool = False) -> Dict[str, np.ndarray]:
    """Per-segment binary masks of a panoptic map (things and stuff alike), e.g. for mask training.

    Args:
        panoptic (np.ndarray): (H, W) segment ids.
        segments_info (list[dict]): segments with ``id``, ``label``, ``iscrowd``, ``isthing``.
        with_crowd (bool): keep crowd segments. Default False (Mask2Former / FC-CLIP drop them).

    Returns:
        dict: ``masks`` (N, H, W) bool, ``labels`` (N,) int64, ``iscrowd`` (N,) bool, ``isthing``
            (N,)
        bool; segments with no pixel (e.g. cropped away) are dropped.
    """
    kept = [s for s in segments_info if with_crowd or not s['iscrowd']]
    masks = np.stack([panoptic == s['id'] for s in kept]) if kept else np.zeros(
        (0, *panoptic.shape), dtype=bool)
    present = masks.reshape(len(kept), -1).any(axis=1)
    kept = [s for s, p in zip(kept, present) if p]
    return dict(masks=masks[present],
                labels=np.array([s['label'] for s in kept], dtype=np.int64),
                iscrowd=np.array([s['iscrowd'] for s in kept], dtype=bool),
                isthing=np.array([s['isthing'] for s in kept], dtype=bool))


@TRANSFORMS.register_module()
class LoadPanopticAnnotations(BaseTransform):
    """Load a COCO panoptic PNG into a semantic map and a segment-id map.

    Required keys: ``seg_map_path`` (the panoptic PNG), ``segments_info`` (from
    ``COCOPanopticDataset``); optional ``label_map``.

    Added keys (both listed in ``seg_fields``, so resize / crop / flip keep them aligned):

    - ``gt_seg_map`` (np.uint8 (H, W)): contiguous class labels, 255 for void; ``PackSegInputs``
      packs it and mmseg's IoU metric scores it.
    - ``gt_panoptic_seg`` (np.int32 (H, W)): segment ids, 0 void; with ``segments_info`` it gives
      the instance masks (``panoptic_to_instances``).

    Args:
        imdecode_backend (str): mmcv decoding backend. Default 'pillow'.
        backend_args (dict, optional): mmengine file backend arguments. Default None.
    """

    def __init__(self,
                 imdecode_backend: str = 'pillow',
                 backend_args: Optional[dict] = None) -> None:
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args.copy() if backend_args else None

    def transform(self, results: dict) -> dict:
        """Add ``gt_seg_map`` and ``gt_panoptic_seg`` to ``results``.

        Args:
            results (dict): data info with ``seg_map_path`` and ``segments_info``.

        Returns:
            dict: ``results`` with the two maps.

        Raises:
            ValueError: the PNG holds a segment the JSON does not list.
        """
        path = results['seg_map_path']
        data = fileio.get(path, backend_args=self.backend_args)
        rgb = mmcv.imfrombytes(data,
                               flag='color',
                               channel_order='rgb',
                               backend=self.imdecode_backend)
        panoptic = rgb_to_panoptic_id(rgb)
        results['gt_seg_map'] = panoptic_to_semantic(panoptic, results['segments_info'], path,
                                                     results.get('label_map'))
        results['gt_panoptic_seg'] = panoptic
        results.setdefault('seg_fields', []).extend(['gt_seg_map', 'gt_panoptic_seg'])
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(imdecode_backend='{self.imdecode_backend}', "
                f'backend_args={self.backend_args})')
