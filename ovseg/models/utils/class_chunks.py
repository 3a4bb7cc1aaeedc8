"""Large vocabularies without their full-resolution score maps: window scores at feature resolution,
rendered to the original image one chunk of classes at a time.

``OVSegmentor`` computes class probabilities at the feature resolution (cheap: 28 x 28 x K per 448 window),
then upsamples them to each window, averages overlapping windows, crops the batch padding, undoes a flip,
resizes to the original image and takes the argmax. Every one of those steps acts on each class channel
alone, so they can run on a chunk of classes at a time: per channel the same operations in the same order
(:func:`ovseg.models.utils.sliding_window.slide_inference`, then
:func:`ovseg.models.utils.seg_results.scores_to_original`), hence the same numbers, and a running argmax
over the chunks (first index on ties, as ``argmax``). Only one chunk lives at full resolution at a time
(ADE-847 at 448 x 597: 0.9 GB for all classes, 68 MB for 64), plus the kept scores when asked for.
"""
import torch
import torch.nn.functional as F

from ovseg.models.utils.seg_results import image_meta, scores_to_original, set_semantic
from ovseg.models.utils.sliding_window import window_batches


def predict_in_class_chunks(inputs, data_samples, lowres_fn, slide=None, class_chunk=64, keep_scores=True):
    """Whole or slide inference and result packing, ``class_chunk`` classes at full resolution at a time.

    Args:
        inputs (Tensor): (B, 3, H, W) preprocessed images.
        data_samples (list[SegDataSample] | None): their metadata (``img_shape``, ``ori_shape``, flip).
        lowres_fn (Callable): (N, 3, h, w) crops -> ((N, K, h', w') scores at feature resolution, (hp, wp)
            the crop size padded to the stride, that the scores are upsampled to before the crop).
        slide (tuple, optional): (crop_size, stride, window_batch) of slide inference; None: whole.
        class_chunk (int): classes at full resolution at a time. Default 64.
        keep_scores (bool): also store the (K, h0, w0) ``seg_logits``. Default True.

    Returns:
        list[SegDataSample]: ``pred_sem_seg`` (and ``seg_logits``) as ``pack_seg_results`` gives them.
    """
    windows, boxes, padded = _lowres_windows(inputs, lowres_fn, slide)
    samples = data_samples if data_samples is not None else [None] * inputs.shape[0]
    results = []
    for per_image, sample in zip(windows, samples):
        meta = image_meta(sample, inputs.shape[-2:])
        scores, pred = render_class_chunks(per_image, boxes, inputs.shape[-2:], padded, meta, class_chunk,
                                           keep_scores, average=slide is not None)
        results.append(set_semantic(sample, meta, scores, pred))
    return results


def _lowres_windows(inputs, lowres_fn, slide):
    """Per image the list of its windows' (K, h', w') scores, the windows' boxes and padded size."""
    height, width = inputs.shape[-2:]
    if slide is None:
        scores, padded = lowres_fn(inputs)
        return [[s] for s in scores], [(0, height, 0, width)], padded
    windows, boxes = [[] for _ in range(inputs.shape[0])], []
    for crops, jobs in window_batches(inputs, *slide):
        scores, padded = lowres_fn(crops)
        for score, (i, box) in zip(scores, jobs):
            windows[i].append(score)
            if i == 0:
                boxes.append(box)
    return windows, boxes, padded


def render_class_chunks(windows, boxes, input_shape, padded, meta, class_chunk=64, keep_scores=True,
                        average=True):
    """One image's window scores at feature resolution -> its scores and prediction at the original size.

    Args:
        windows (list[Tensor]): per window, (K, h', w') scores at feature resolution.
        boxes (list[tuple]): per window, its (y1, y2, x1, x2) in the network input.
        input_shape (tuple[int, int]): (H, W) of the network input (the batch's, padding included).
        padded (tuple[int, int]): the window size padded to the stride: scores are upsampled to it, then
            cropped to the window.
        meta (dict): ``img_shape``, ``ori_shape``, ``flip``, ``flip_direction`` of the image.
        class_chunk (int): classes at full resolution at a time. Default 64.
        keep_scores (bool): also return the (K, h0, w0) scores. Default True.
        average (bool): sum the windows and divide by their count per pixel (slide inference); False: one
            window covering the input (whole inference). Default True.

    Returns:
        tuple: (K, h0, w0) float32 scores or None, (h0, w0) int64 prediction.
    """
    num_classes, step = windows[0].shape[0], max(int(class_chunk), 1)
    count = None
    if average:
        count = torch.zeros((1, *input_shape), dtype=torch.float32, device=windows[0].device)
        for y1, y2, x1, x2 in boxes:
            count[:, y1:y2, x1:x2] += 1
    scores = best = pred = None
    for start in range(0, num_classes, step):
        part = _chunk_at_input([w[start:start + step] for w in windows], boxes, input_shape, padded, count)
        part = scores_to_original(part, meta)
        if keep_scores:
            scores = part.new_empty((num_classes, *part.shape[1:])) if scores is None else scores
            scores[start:start + part.shape[0]] = part
        value, index = part.max(dim=0)
        if best is None:
            best, pred = value, index
        else:  # strictly greater: the first index wins ties; NaN wins as in argmax
            better = (value > best) | (value.isnan() & ~best.isnan())
            best, pred = torch.where(better, value, best), torch.where(better, index + start, pred)
    return scores, pred


def _chunk_at_input(windows, boxes, input_shape, padded, count):
    """A chunk of class channels at the network input: encode_decode's upsample and crop per window, then
    slide_inference's sum and division by the window count (``count`` None: the one window is the input)."""
    if count is None:
        return _upsample(windows[0], padded)[:, :input_shape[0], :input_shape[1]]
    acc = None
    for score, (y1, y2, x1, x2) in zip(windows, boxes):
        up = _upsample(score, padded)[:, :y2 - y1, :x2 - x1]
        if acc is None:
            acc = up.new_zeros((up.shape[0], *input_shape))
        acc[:, y1:y2, x1:x2] += up
    return acc / count


def _upsample(score, size):
    return F.interpolate(score[None], size=tuple(size), mode='bilinear', align_corners=False)[0].float()
