"""FrozenSeg's mask-proposal ensemble: SAM "everything" masks classified by the frozen CLIP join the
semantic map for unseen classes (the original's ``geo_with_sam_inference``)."""
import torch
import torch.nn.functional as F

POOLING = ('released', 'aligned')


def proposals_for_pooling(proposal_logits, clip_grid, size_divisor=32, valid_shape=None, padded_shape=None,
                          mode='released'):
    """Proposal logits -> the (1, M, h', w') map FC-CLIP's out-of-vocabulary classifier pools with.

    'released': nearest-resize the whole proposal map onto the (padded input's) CLIP grid, then zero-pad
    that small map to a multiple of ``size_divisor`` as the original's ``ImageList.from_tensors`` does;
    the classifier's bilinear resize back to the grid then samples mostly padding (what the released
    model was evaluated with). 'aligned': bilinear-resize the logits to the unpadded input, zero-pad to
    the padded input and let the classifier resize that to the grid, as FC-CLIP does with its own masks.

    Args:
        proposal_logits (Tensor): (M, H, W) mask logits in the image frame (any resolution).
        clip_grid (tuple[int, int]): (h, w) of ``clip_vis_dense``.
        size_divisor (int): the original's padding divisor ('released'). Default 32.
        valid_shape, padded_shape (tuple[int, int]): unpadded and padded input sizes ('aligned').
        mode (str): 'released' (default) or 'aligned'.

    Returns:
        Tensor: (1, M, h', w') float32 logits.
    """
    if mode not in POOLING:
        raise ValueError(f'proposal pooling must be one of {POOLING}, got {mode!r}')
    logits = proposal_logits.float()[None]
    if mode == 'released':
        small = F.interpolate(logits, size=tuple(clip_grid), mode='nearest')
        h, w = small.shape[-2:]
        return F.pad(small, (0, (-w) % size_divisor, 0, (-h) % size_divisor))
    up = F.interpolate(logits, size=tuple(valid_shape), mode='bilinear', align_corners=False)
    return F.pad(up, (0, padded_shape[1] - valid_shape[1], 0, padded_shape[0] - valid_shape[0]))


def proposal_ensemble(mask_cls, mask_pred, proposal_logits, proposal_cls, seen_mask, alpha=0.2,
                      keep_threshold=0.5):
    """Semantic scores from the decoder's masks plus the SAM proposals confidently of an unseen class.

    ``p = softmax(mask_cls)[:, :-1]`` (decoder queries), ``s = softmax(proposal_cls)[:, :-1]`` (proposals,
    void in the softmax). A proposal is kept when its largest probability over *unseen* classes exceeds
    ``keep_threshold``. Then, per class c: seen classes take ``Σ_q p_qc σ(m_q)``; unseen classes take
    ``(1 - alpha) Σ_q p_qc σ(m_q) + alpha Σ_kept s_kc σ(r_k)`` (the original's ``SAM_MASK_PRED_ALPHA``;
    its seen-class proposal weight is 0). Proposals' predicted IoU are not used (neither in the original).

    Args:
        mask_cls (Tensor): (Q, K + 1) final class log-probabilities of the queries.
        mask_pred (Tensor): (Q, H, W) their mask logits.
        proposal_logits (Tensor): (M, H, W) proposal mask logits, same size as ``mask_pred``.
        proposal_cls (Tensor): (M, K + 1) CLIP logits of the proposals (void column last).
        seen_mask (Tensor): (K,) bool, classes seen in training.
        alpha (float): proposal weight for unseen classes. Default 0.2.
        keep_threshold (float): unseen-class probability a proposal must exceed. Default 0.5.

    Returns:
        tuple[Tensor, Tensor, Tensor]: (K, H, W) scores, (M,) bool kept proposals and (M,) their largest
        unseen-class probability.
    """
    seen = seen_mask.to(mask_cls.device, torch.float32).view(1, -1)
    probs = F.softmax(mask_cls.float(), dim=-1)[:, :-1]
    prop_probs = F.softmax(proposal_cls.float(), dim=-1)[:, :-1]
    masks = mask_pred.float().sigmoid()
    unseen_probs = prop_probs * (1 - seen)
    unseen_max = unseen_probs.max(dim=1).values if len(unseen_probs) else unseen_probs.new_zeros(0)
    keep = unseen_max > keep_threshold
    in_sem = torch.einsum('qc,qhw->chw', probs * seen, masks)
    out_sem = torch.einsum('qc,qhw->chw', probs * (1 - seen) * (1 - alpha), masks)
    if bool(keep.any()):
        out_sem = out_sem + torch.einsum('mc,mhw->chw', unseen_probs[keep] * alpha,
                                         proposal_logits[keep].float().sigmoid())
    return in_sem + out_sem, keep, unseen_max
