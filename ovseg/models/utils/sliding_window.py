"""Whole and slide inference, written once; slide windows go through the model in batches."""
import torch


def window_boxes(height, width, crop_size, stride):
    """mmseg's slide-window grid: (y1, y2, x1, x2) boxes, every box of the same size, last ones flush."""
    h_crop, w_crop = crop_size
    h_stride, w_stride = stride
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
    boxes = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * h_stride, wi * w_stride
            y2, x2 = min(y1 + h_crop, height), min(x1 + w_crop, width)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            boxes.append((y1, y2, x1, x2))
    return boxes


def slide_inference(inputs, window_fn, crop_size, stride, window_batch=8):
    """Average ``window_fn`` scores over overlapping windows.

    Args:
        inputs (Tensor): (B, 3, H, W).
        window_fn (Callable): (N, 3, h, w) crops -> (N, K, h, w) scores.
        crop_size (tuple[int, int]): window (h, w).
        stride (tuple[int, int]): step (h, w).
        window_batch (int): windows per ``window_fn`` call (across images). Default 8.

    Returns:
        Tensor: (B, K, H, W) float32 mean scores.
    """
    b, _, height, width = inputs.shape
    preds, count = None, inputs.new_zeros((b, 1, height, width), dtype=torch.float32)
    for crops, chunk in window_batches(inputs, crop_size, stride, window_batch):
        scores = window_fn(crops).float()
        if preds is None:
            preds = scores.new_zeros((b, scores.shape[1], height, width))
        for score, (i, (y1, y2, x1, x2)) in zip(scores, chunk):
            preds[i, :, y1:y2, x1:x2] += score
            count[i, :, y1:y2, x1:x2] += 1
    return preds / count


def window_batches(inputs, crop_size, stride, window_batch=8):
    """The windows of every image of ``inputs`` in batches of ``window_batch`` (across images), in the order
    :func:`slide_inference` sums them: yields ((N, 3, h, w) crops, [(image index, (y1, y2, x1, x2)), ...])."""
    boxes = window_boxes(inputs.shape[-2], inputs.shape[-1], crop_size, stride)
    jobs = [(i, box) for i in range(inputs.shape[0]) for box in boxes]
    for start in range(0, len(jobs), window_batch):
        chunk = jobs[start:start + window_batch]
        yield torch.stack([inputs[i, :, y1:y2, x1:x2] for i, (y1, y2, x1, x2) in chunk]), chunk
