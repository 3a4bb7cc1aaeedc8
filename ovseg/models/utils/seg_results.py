"""Turn batch score maps into mmseg ``SegDataSample`` results."""
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample


def _meta(sample, input_shape):
    meta = dict(sample.metainfo) if sample is not None else {}
    meta.setdefault('img_shape', tuple(input_shape))
    meta.setdefault('ori_shape', meta['img_shape'])
    return meta


def pack_seg_results(scores, data_samples, input_shape):
    """(B, K, H, W) scores -> SegDataSamples with ``seg_logits`` (K, h0, w0) and ``pred_sem_seg`` (1, h0, w0).

    Per image: remove the batch padding (``img_shape``), undo a test-time flip, resize bilinearly to
    ``ori_shape`` and take the argmax (also for K == 1, unlike mmseg's sigmoid rule for binary heads).
    """
    samples = data_samples if data_samples is not None else [None] * scores.shape[0]
    results = []
    for score, sample in zip(scores, samples):
        meta = _meta(sample, input_shape)
        h, w = meta['img_shape'][:2]
        score = score[:, :h, :w]
        if meta.get('flip', False):
            dims = {'horizontal': (2,), 'vertical': (1,), 'diagonal': (1, 2)}[meta.get('flip_direction',
                                                                                   'horizontal')]
            score = score.flip(dims)
        ori = tuple(meta['ori_shape'][:2])
        if tuple(score.shape[-2:]) != ori:
            score = F.interpolate(score[None], size=ori, mode='bilinear', align_corners=False)[0]
        out = sample if sample is not None else SegDataSample(metainfo=meta)
        out.set_data({'seg_logits': PixelData(data=score),
                      'pred_sem_seg': PixelData(data=score.argmax(dim=0, keepdim=True))})
        results.append(out)
    return results
