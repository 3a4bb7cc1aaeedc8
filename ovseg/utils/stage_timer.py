"""Per-stage inference time of any ovseg segmentor: module forwards and selected methods, exclusive.

Stages of a model (:func:`stage_plan`) come from declarations on the classes themselves, read along each
instance's MRO (a subclass adds to its bases' declarations and may relabel one of their methods):

- every top-level child module (``data_preprocessor``, ``backbone``, ``refiner``, ``sam_refiner``,
  ``proposals``, ``pixel_decoder``, ``transformer_decoder``, ``out_vocab_classifier``, ``head``, ...),
  timed with forward pre/post hooks, except the names in the model's ``merged_children`` (their time stays
  in a method stage: OVSegmentor's ``head`` is part of ``head_rules``);
- nested modules whose class sets ``timed_as_stage = True`` (FC-CLIP's in-vocabulary classifier), and the
  submodules an owner names in ``stage_submodules`` (for classes we do not own: SAM's ``ImageEncoderViT``
  is declared by ``SAMPredictor`` and ``SAMEncoderBackbone``), named by their dotted path
  (``transformer_decoder.class_head``, ``proposals.sam.model.image_encoder``);
- the methods in a class's ``timed_stages`` (``(method, stage name or None)`` pairs), wrapped on the
  instance: named as given for the model's own methods (OVSegmentor ``head_rules`` = similarity head +
  softmax + test-time rules, ``upsample`` = the rest of ``encode_decode``), else ``<module path>.<method>``
  (``head.encode_images``).

A stage's output whose class defines ``stage_count(self) -> (name, count)`` adds ``count`` to
``counts[name]`` (``MaskProposals``: ``sam_proposals``; ``RefineResult``: ``sam_refine_regions``).

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


def sync(device):
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def _declared(obj, attr):
    """The entries of class attribute ``attr`` along ``type(obj)``'s MRO, most derived first."""
    return [entry for cls in type(obj).__mro__ for entry in vars(cls).get(attr, ())]


def _stage_module_ids(model):
    """ids of the nested modules timed as stages: flagged classes and owners' ``stage_submodules``."""
    ids = set()
    for module in model.modules():
        if getattr(module, 'timed_as_stage', False):
            ids.add(id(module))
        for sub in _declared(module, 'stage_submodules'):
            ids.add(id(module.get_submodule(sub)))
    return ids


def stage_plan(model):
    """Stages of a model.

    Returns:
        tuple: modules ``[(stage name, module)]`` and methods ``[(stage name, owner, method name)]``.
    """
    merged = set(_declared(model, 'merged_children'))
    modules = [(name, child) for name, child in model.named_children() if name not in merged]
    nested = _stage_module_ids(model)
    methods = []
    for path, module in model.named_modules():
        if path and id(module) in nested:
            modules.append((path, module))
        seen = set()
        for method, label in _declared(module, 'timed_stages'):
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
        counter = getattr(type(output), 'stage_count', None)
        if counter is not None:
            key, count = counter(output)
            self.counts[key] += count

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
