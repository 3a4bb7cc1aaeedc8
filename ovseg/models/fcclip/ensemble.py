"""FC-CLIP's geometric ensemble of in- and out-of-vocabulary class probabilities."""
import torch

from ovseg.models.utils.precision import float32_region, upcast
from ovseg.text import load_vocabulary


def seen_class_mask(vocabulary, train_vocabulary):
    """Which test classes were seen in training, as FC-CLIP derives it: a class is seen when one of its
    names equals one of the training vocabulary's names (any name of any class, compared exactly, case
    included: ``fcclip/fcclip.py`` ``prepare_class_names_from_metadata`` tests
    ``not set(train_names).isdisjoint(set(test_names))``). Vocabulary names are stripped of surrounding
    spaces when loaded, as FC-CLIP's files have none.

    Args:
        vocabulary: test vocabulary (anything :func:`ovseg.text.load_vocabulary` accepts).
        train_vocabulary: training vocabulary, or None (every class unseen).

    Returns:
        Tensor: (K,) bool.
    """
    vocab = load_vocabulary(vocabulary)
    if train_vocabulary is None:
        return torch.zeros(len(vocab), dtype=torch.bool)
    train = set(load_vocabulary(train_vocabulary).synonyms)
    seen = [not train.isdisjoint(cls) for cls in vocab.classes]
    return torch.tensor(seen, dtype=torch.bool)


def geometric_ensemble(in_logits, out_logits, seen_mask, alpha=0.4, beta=0.8, valid=None):
    """Combine the two classifiers and return per-query class log-probabilities with void.

    Seen classes use ``p_in^(1-alpha) · p_out^alpha``, unseen ones ``p_in^(1-beta) · p_out^beta`` (softmax
    over the K real classes of each branch); the result is renormalised and scaled by ``1 - p_void``
    (void from the in-vocabulary softmax over K + 1), and ``log(p + 1e-8)`` is returned.

    Args:
        in_logits (Tensor): (B, Q, K + 1) in-vocabulary logits (void last).
        out_logits (Tensor): (B, Q, K + 1) or (B, Q, K) out-of-vocabulary logits (a void column is dropped).
        seen_mask (Tensor): (K,) bool.
        alpha (float): out-of-vocabulary weight for seen classes. Default 0.4.
        beta (float): out-of-vocabulary weight for unseen classes. Default 0.8.
        valid (Tensor, optional): (B, Q) bool; where False, only the in-vocabulary branch is used
            (FC-CLIP's ``ENSEMBLE_ON_VALID_MASK``, for masks with no pixel on the CLIP grid).

    Returns:
        dict: ``in_probs``, ``out_probs`` (B, Q, K), ``ensemble_log_probs`` (B, Q, K), ``void_prob``
        (B, Q, 1), ``probs`` (B, Q, K + 1) and ``log_probs`` (B, Q, K + 1); float32 for half-precision
        inputs (computed in float32 also under autocast).
    """
    with float32_region(in_logits):
        return _ensemble(upcast(in_logits), upcast(out_logits), seen_mask, alpha, beta, valid)


def _ensemble(in_logits, out_logits, seen_mask, alpha, beta, valid):
    k = in_logits.shape[-1] - 1
    in_probs = in_logits[..., :k].softmax(-1)
    out_probs = out_logits[..., :k].softmax(-1)
    a, b = alpha, beta
    if valid is not None:
        a, b = alpha * valid[..., None].to(in_probs.dtype), beta * valid[..., None].to(in_probs.dtype)
    seen = seen_mask.to(in_probs.device).bool()
    # torch.where instead of the original's mask products: identical where finite, no 0 * -inf = nan
    ens = torch.where(seen, (in_probs ** (1 - a) * out_probs ** a).log(),
                      (in_probs ** (1 - b) * out_probs ** b).log())
    void = in_logits.softmax(-1)[..., -1:]
    probs = torch.cat([ens.softmax(-1) * (1.0 - void), void], -1)
    return dict(in_probs=in_probs, out_probs=out_probs, ensemble_log_probs=ens, void_prob=void, probs=probs,
                log_probs=torch.log(probs + 1e-8))
