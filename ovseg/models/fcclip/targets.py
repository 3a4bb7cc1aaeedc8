"""Mask-classification training targets (one binary mask + class per segment) from ``SegDataSample``s."""
import numpy as np
import torch
import torch.nn.functional as F

from ovseg.datasets.transforms.panoptic import panoptic_to_instances


def _pad(masks, size):
    """Zero-pad (N, h, w) masks at the bottom/right to ``size``."""
    h, w = masks.shape[-2:]
    return F.pad(masks, (0, size[1] - w, 0, size[0] - h)) if (h, w) != tuple(size) else masks


def _from_instances(instances):
    masks = instances.masks
    masks = torch.as_tensor(masks.to_ndarray() if hasattr(masks, 'to_ndarray') else masks)
    return instances.labels.long(), masks


def _from_panoptic(sample):
    ids = sample.gt_panoptic_seg.data[0].cpu().numpy()
    inst = panoptic_to_instances(ids, sample.metainfo['segments_info'], with_crowd=False)
    return torch.from_numpy(inst['labels']), torch.from_numpy(inst['masks'])


def _from_semantic(sample, ignore_index):
    sem = sample.gt_sem_seg.data[0]
    classes = [c for c in torch.unique(sem).tolist() if c != ignore_index]
    labels = torch.tensor(classes, dtype=torch.long)
    if not classes:
        return labels, sem.new_zeros((0, *sem.shape), dtype=torch.bool)
    masks = torch.stack([sem == c for c in classes])
    return labels, masks


def targets_from_samples(data_samples, pad_size, device, ignore_index=255):
    """One target dict per image for :class:`MaskSetCriterion`.

    Sources, in order of preference:

    1. ``sample.gt_instances`` with ``labels`` (N,) and ``masks`` ((N, H, W) tensor/array or mmdet
       ``BitmapMasks``);
    2. ``sample.gt_panoptic_seg`` (segment ids, 0 = void) with ``sample.metainfo['segments_info']``
       (``id``, ``label``, ``iscrowd``): one target per non-crowd segment (COCO panoptic training);
    3. ``sample.gt_sem_seg``: one target per class present (``ignore_index`` excluded).

    Args:
        data_samples (list[SegDataSample]): the batch's samples.
        pad_size (tuple[int, int]): (H, W) of the padded input batch; masks are zero-padded to it.
        device (torch.device): where the targets go.
        ignore_index (int): ignored semantic label. Default 255.

    Returns:
        list[dict]: ``labels`` (T,) int64 and ``masks`` (T, H, W) float32.
    """
    targets = []
    for sample in data_samples:
        if 'gt_instances' in sample:
            labels, masks = _from_instances(sample.gt_instances)
        elif 'gt_panoptic_seg' in sample and 'segments_info' in sample.metainfo:
            labels, masks = _from_panoptic(sample)
        elif 'gt_sem_seg' in sample:
            labels, masks = _from_semantic(sample, ignore_index)
        else:
            raise KeyError('FC-CLIP training needs gt_instances, gt_panoptic_seg + segments_info, or '
                           f'gt_sem_seg in every data sample; got fields {sorted(sample.keys())}')
        masks = masks if torch.is_tensor(masks) else torch.as_tensor(np.asarray(masks))
        masks = _pad(masks.float(), pad_size)
        targets.append(dict(labels=labels.to(device), masks=masks.to(device)))
    return targets
