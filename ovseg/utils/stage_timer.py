"""Per-stage inference time of any ovseg segmentor: module forwards and selected methods, exclusive.

Stages of a model (:func:`stage_plan`):

- every top-level child module (``data_preprocessor``, ``backbone``, ``refiner``, ``sam_refiner``,
  ``proposals``, ``pixel_decoder``, ``transformer_decoder``, ``out_vocab_classifier``, ``head``, ...),
  timed with forward pre/post hooks, except those listed in ``MERGED_CHILDREN``;
- nested modules of the classes in ``NESTED_STAGES`` (FC-CLIP's in-vocabulary classifier, SAM's image
  encoder), named by their dotted path (``transformer_decoder.class_head``,
  ``proposals.sam.model.image_encoder``);
- the methods in ``STAGE_METHODS`` (by the class name of their owner, subclasses included), wrapped on
  the instance: named as given for the model's own methods (OVSegmentor ``head_rules`` = similarity head
  + softmax + test-time rules, ``upsample`` = the rest of ``encode_decode``), else
  ``<module path>.<method>`` (``head.encode_images``).

Times are exclusive: a stage running inside another is not counted again in the outer one, so the
stages of one call never sum to more than its wall time.

Example::

    timer = StageTimer(model, 'cpu')
    model.test_step(batch)
    timer.remove()
    timer.split_ms(total_seconds, images)   # {'backbone': ..., 'head_rules': ..., 'other': ...}
"""
import time
from collections import defaultdict

import torch

# Methods timed as stages, by the class name of their owner: (method, stage name or None for
# '<module path>.<method>').
STAGE_METHODS = {
    'OVSegmentor': (('scores_from_features', 'head_rules'), ('encode_decode', 'upsample')),
    'SAMProposalSegmentor': (('classify_masks', 'mask_classify'),),
    'CorrCLIPSegmentor': (('label_maps', 'proposals'),),
    'TridentSegmentor': (('splice_features', 'splice'), ('classify', 'classify'), ('refine_prediction', 'refinement')),
    'SAMCorrelationAggregator': (('correlation', 'sam_encoder'), ('accumulate', 'sam_weights')),
    'SAMRefiner': (('refine_and_pack', 'sam_refiner'), ('prompt_regions', None)),
    'FCCLIPSegmentor': (('postprocess', 'postprocess'),),
    'WinCLIPHead': (('text_embeddings', None), ('encode_images', None), ('score', None)),
    'AnoVLHead': (('text_features', None), ('encode_tokens', None), ('adapt', None), ('score_tokens', None),
                  ('image_scores', None)),
    'MuScHead': (('extract', None),),
    'AnomalyCLIPHead': (('text_features', None), ('encode_images', None), ('score', None)),
    'AdaptCLIPHead': (('text_features', None), ('encode_images', None), ('score', None)),
}
# Top-level children whose time stays in a method stage (OVSegmentor's head is part of head_rules).
MERGED_CHILDREN = {'OVSegmentor': ('head',)}
# Nested modules timed as stages of their own, by class name.
NESTED_STAGES = ('FCCLIPInVocabClassifier', 'ImageEncoderViT')
# Stage outputs counted (work that depends on the data and the weights): output class -> (name, count).
COUNTERS = {'MaskProposals': ('sam_proposals', len),
            'RefineResult': ('sam_refine_regions', lambda result: len(result.regions))}


def sync(device):
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def _class_names(obj):
    return [k.__name__ for k in type(obj).__mro__]


def stage_plan(model):
    """Stages of a model.

    Returns:
        tuple: modules ``[(stage name, module)]`` and methods ``[(stage name, owner, method name)]``.
    """
    merged = {c for n in _class_names(model) for c in MERGED_CHILDREN.get(n, ())}
    modules = [(name, child) for name, child in model.named_children() if name not in merged]
    methods = []
    for path, module in model.named_modules():
        if path and any(n in NESTED_STAGES for n in _class_names(module)):
            modules.append((path, module))
        seen = set()
        for cls_name in _class_names(module):
            for method, label in STAGE_METHODS.get(cls_name, ()):
                if method not in seen and hasattr(module, method):
                    seen.add(method)
                    methods.append((label or (f'{path}.{method}' if path else method), module, method))
    return modules, methods


class StageTimer:
    """Exclusive wall time per stage of ``model`` (see the module docstring) until :meth:`remove`.

    Args:
        model (nn.Module): the segmentor.
        device (str | torch.device): synchronised at every stage boundary when CUDA.
    """

    def __init__(self, model, device):
        self.device = device
        self._handles, self._wrapped = [], []
        self.reset()
        modules, methods = stage_plan(model)
        for name, module in modules:
            self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._enter(n)))
            self._handles.append(module.register_forward_hook(lambda m, a, o, n=name: self._exit(n, o)))
        for name, owner, method in methods:
            self._wrapped.append((owner, method))
            setattr(owner, method, self._wrap(name, getattr(owner, method)))

    def reset(self):
        """Forget the times and counts so far."""
        self.totals, self.calls, self.counts = defaultdict(float), defaultdict(int), defaultdict(int)
        self._stack = []  # [stage name, start, seconds of the stages nested in it]

    def _enter(self, name):
        sync(self.device)
        self._stack.append([name, time.perf_counter(), 0.0])

    def _exit(self, name, output=None):
        sync(self.device)
        now = time.perf_counter()
        while self._stack:  # stages left open by an exception are dropped
            entry = self._stack.pop()
            if entry[0] == name:
                break
        else:
            return
        elapsed = now - entry[1]
        self.totals[name] += elapsed - entry[2]
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][2] += elapsed
        counter = COUNTERS.get(type(output).__name__)
        if counter is not None:
            self.counts[counter[0]] += counter[1](output)

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            self._enter(name)
            out = None
            try:
                out = fn(*args, **kwargs)
                return out
            finally:
                self._exit(name, out)
        return timed

    def remove(self):
        """Remove the hooks and the method wrappers (the model is as before)."""
        for handle in self._handles:
            handle.remove()
        for owner, method in self._wrapped:
            delattr(owner, method)
        self._handles, self._wrapped = [], []

    def split_ms(self, total_s, images):
        """Mean exclusive ms per image of every stage that ran, and 'other' (the rest of ``total_s``).

        Args:
            total_s (float): wall seconds of the timed calls.
            images (int): images in them.
        """
        per = {k: 1000.0 * v / images for k, v in self.totals.items() if self.calls[k]}
        per['other'] = 1000.0 * total_s / images - sum(per.values())
        return per
