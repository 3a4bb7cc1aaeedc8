"""Turn batch score maps into mmseg ``SegDataSample`` results."""
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

_FLIP_DIMS = {'horizontal': (-1,), 'vertical': (-2,), 'diagonal': (-2, -1)}


def image_meta(sample, input_shape):
    """One image's packing metadata (``img_shape``, ``ori_shape``, flip), defaults from the input shape."""
    meta = dict(sample.metainfo) if sample is not None else {}
    meta.setdefault('img_shape', tuple(input_shape))
    meta.setdefault('ori_shape', meta['img_shape'])
    return meta


def scores_to_original(score, meta):
    """(K, H, W) scores at the network input -> (K, h0, w0): remove the batch padding (``img_shape``),
    undo a test-time flip, resize bilinearly to ``ori_shape``. Every step acts on each channel alone."""
    h, w = meta['img_shape'][:2]
    score = score[:, :h, :w]
    if meta.get('flip', False):
        score = score.flip(_FLIP_DIMS[meta.get('flip_direction', 'horizontal')])
    ori = tuple(meta['ori_shape'][:2])
    if tuple(score.shape[-2:]) != ori:
        score = F.interpolate(score[None], size=ori, mode='bilinear', align_corners=False)[0]
    return score


def set_semantic(sample, meta, scores, pred):
    """``sample`` (or a new ``SegDataSample``) with ``pred_sem_seg`` (1, h0, w0) and, unless ``scores`` is
    None, ``seg_logits`` (K, h0, w0)."""
    out = sample if sample is not None else SegDataSample(metainfo=meta)
    if scores is not None:
        out.set_data({'seg_logits': PixelData(data=scores)})
    out.set_data({'pred_sem_seg': PixelData(data=pred[None])})
    return out


def pack_seg_results(scores, data_samples, input_shape, keep_scores=True):
    """(B, K, H, W) scores -> SegDataSamples with ``seg_logits`` (K, h0, w0) and ``pred_sem_seg`` (1, h0, w0).

    Per image: :func:`scores_to_original`, then the argmax (also for K == 1, unlike mmseg's sigmoid rule for
    binary heads). ``keep_scores=False`` leaves ``seg_logits`` out (the metrics read ``pred_sem_seg``).
    """
    samples = data_samples if data_samples is not None else [None] * scores.shape[0]
    results = []
    for score, sample in zip(scores, samples):
        meta = image_meta(sample, input_shape)
        score = scores_to_original(score, meta)
        results.append(set_semantic(sample, meta, score if keep_scores else None, score.argmax(dim=0)))
    return results
