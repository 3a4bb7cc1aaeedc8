"""Which classes of a dataset are things: shared by the panoptic and instance metrics."""
from typing import List, Optional, Sequence, Union

import numpy as np


def thing_flags(classes: Sequence[str], thing_classes: Optional[Sequence[Union[int, str]]],
                dataset_meta: Optional[dict], metric: str) -> np.ndarray:
    """(K,) bool: True for thing classes.

    Args:
        classes (Sequence[str]): the dataset's class names (K).
        thing_classes (Sequence[int | str], optional): thing classes as indices or names; when None,
            ``dataset_meta['thing_classes']`` (names) is used.
        dataset_meta (dict, optional): the dataset's metainfo.
        metric (str): metric name quoted in errors.

    Returns:
        np.ndarray: (K,) bool.

    Raises:
        ValueError: no thing classes are known, or one is not a class of the dataset.
    """
    if thing_classes is None:
        thing_classes = (dataset_meta or {}).get('thing_classes')
    if thing_classes is None:
        raise ValueError(f'{metric} needs thing_classes (argument or dataset metainfo '
                         "'thing_classes') to tell things from stuff.")
    flags = np.zeros(len(classes), dtype=bool)
    names = [c.strip() for c in classes]
    for item in thing_classes:
        if isinstance(item, str):
            if item.strip() not in names:
                raise ValueError(f'{metric}: thing class {item!r} is not a dataset class.')
            flags[names.index(item.strip())] = True
        elif 0 <= int(item) < len(classes):
            flags[int(item)] = True
        else:
            raise ValueError(f'{metric}: thing class index {item} is outside 0..{len(classes) - 1}.')
    return flags


def gt_segments(sample: dict, metric: str) -> List[dict]:
    """The ground-truth ``segments_info`` of a data sample dict, with a pipeline hint when absent."""
    if 'gt_panoptic_seg' not in sample or 'segments_info' not in sample:
        raise KeyError(
            f'{metric} needs gt_panoptic_seg and segments_info in every data sample: add '
            "LoadPanopticAnnotations (COCO layout) or LoadPanopticSegIds (ADE layout) and "
            "PackPanopticInputs to the test pipeline.")
    return sample['segments_info']
