"""Class probabilities from per-query cosine logits, as SCLIP, ClearCLIP and NACLIP compute them.

Reference: ``postprocess_result`` of wangf3014/SCLIP ``clip_segmentor.py``, mc-lan/ClearCLIP
``clearclip_segmentor.py`` and sinahmr/NACLIP ``naclip.py``, for one image:

1. probabilities = softmax over the Q queries of ``logit_scale * logits``;
2. a class's probability is the maximum over its queries (the query probabilities are not renormalised);
3. SCLIP's area rule (``area_thd``): n_c = pixels whose argmax is class c, for c >= 1; class c is kept
   iff n_c > area_thd * sum_{c >= 1} n_c; a dropped class's probabilities are multiplied by 0 (class 0,
   the background, is never dropped nor counted);
4. prediction = argmax (first index on ties); pixels whose top class probability is below ``prob_thd``
   become class 0;
5. NACLIP (``renormalize``): the stored class probabilities are divided by their sum over classes,
   after the prediction.
"""
import torch

from ovseg.models.text_encoders.text_classifier import max_over_synonyms


def query_probabilities(logits, synonym_to_class, num_classes, logit_scale, area_thd=None, prob_thd=0.0,
                        renormalize=False):
    """Per-query logits of one image -> class probabilities and prediction.

    Args:
        logits (Tensor): (Q, H, W) cosine similarities of every query (synonym).
        synonym_to_class (Tensor): (Q,) class of each query.
        num_classes (int): K.
        logit_scale (float): multiplier before the softmax over queries.
        area_thd (float, optional): SCLIP's area rule (module docstring). Default None (off).
        prob_thd (float): top probability below which a pixel is class 0. Default 0.
        renormalize (bool): divide the returned probabilities by their sum (NACLIP). Default False.

    Returns:
        tuple[Tensor, Tensor, dict]: (K, H, W) float32 probabilities, (1, H, W) int64 prediction and
        ``area_counts`` (K - 1,) / ``area_keep`` (K - 1,) when the area rule ran.
    """
    probs = (logits.float() * logit_scale).softmax(dim=0)
    probs = max_over_synonyms(probs[None], synonym_to_class.to(probs.device), num_classes)[0]
    extra = {}
    if area_thd is not None:
        counts = torch.bincount(probs.argmax(dim=0).flatten(), minlength=num_classes)[1:].float()
        keep = counts > area_thd * counts.sum()
        probs = torch.cat([probs[:1], probs[1:] * keep[:, None, None].to(probs.dtype)])
        extra = dict(area_counts=counts.long(), area_keep=keep)
    top = probs.amax(dim=0, keepdim=True)
    pred = probs.argmax(dim=0, keepdim=True)
    pred = pred.masked_fill(top < prob_thd, 0)
    if renormalize:
        probs = probs / probs.sum(dim=0, keepdim=True)
    return probs, pred, extra
