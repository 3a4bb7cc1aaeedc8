"""mmseg segmentor for few-shot anomaly heads: a memory of normal reference images per category.

The references of a test image come either from its metainfo ``reference_paths`` (a dataset built with
``references=dict(k_shot=..., seed=..., draw=...)``, see ``ovseg.datasets.anomaly.references``: this is
how ``tools/test.py`` runs a k-shot protocol) or from the caller (``predict(..., memory=...)``: the
inference API encodes uploaded references with :meth:`FewShotAnomalySegmentor.build_memory`). Without
references the head runs zero-shot.
"""
from collections import OrderedDict

import torch
from mmseg.models.segmentors.base import BaseSegmentor

from ovseg.models.anomaly.anomaly_segmentor import ZeroShotAnomalySegmentor, pack_anomaly_results
from ovseg.models.utils.precision import upcast
from ovseg.registry import MODELS, TRANSFORMS


@MODELS.register_module()
class FewShotAnomalySegmentor(ZeroShotAnomalySegmentor):
    """Anomaly maps and image scores from a head scored against normal reference images.

    Call graph::

        predict(inputs, data_samples, memory=None)
          └─ run_head
               ├─ groups of consecutive images sharing their metainfo ``reference_paths``
               ├─ memory_for_paths(paths)      cached: load_references ─ build_memory (head.build_memory)
               └─ head(backbone, images, class names, memory)
          └─ pack_anomaly_results

    Args:
        backbone (dict): ``OpenCLIPBackbone`` config.
        head (dict): a head with ``uses_references`` (``WinCLIPFewShotHead``, ``AdaptCLIPHead``).
        reference_pipeline (list[dict], optional): transforms that load a reference image from its path
            and resize it like the queries (the config's test pipeline); needed for ``reference_paths``.
        memory_cache (int): reference memories kept, least recently used dropped (datasets list images
            by category, so 1 suffices). Default 1.
        **kwargs: :class:`ZeroShotAnomalySegmentor` arguments (class_names, test_cfg, precision, ...).
    """

    def __init__(self, backbone, head, reference_pipeline=None, memory_cache=1, class_names=None,
                 default_class_name='object', test_cfg=None, precision='fp32', data_preprocessor=None,
                 init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        BaseSegmentor.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.head = MODELS.build(self.complete_head_cfg(dict(head)))
        if not getattr(self.head, 'uses_references', False):
            raise ValueError(f'{type(self.head).__name__} does not use normal reference images; use '
                             f'ZeroShotAnomalySegmentor')
        self.name_map = dict(class_names or {})
        self.default_class_name = default_class_name
        self.test_cfg = dict(test_cfg or {})
        self.precision = precision
        self.reference_pipeline = None if reference_pipeline is None else [
            TRANSFORMS.build(t) for t in reference_pipeline]
        self.memory_cache = max(1, int(memory_cache))
        self._memories = OrderedDict()

    def complete_head_cfg(self, head):
        """The head config to build, once ``self.backbone`` exists (subclasses fill in widths)."""
        return head

    def build_memory(self, reference_inputs):
        """(k, 3, H, W) preprocessed reference images -> the head's memory (under ``precision``)."""
        with torch.no_grad(), self._autocast(reference_inputs.device):
            return upcast(self.head.build_memory(self.backbone, reference_inputs))

    def load_references(self, paths, device=None):
        """Reference image files -> (k, 3, H, W) model inputs (reference pipeline + data preprocessor).

        Raises:
            RuntimeError: the segmentor has no ``reference_pipeline``.
        """
        if self.reference_pipeline is None:
            raise RuntimeError('reference_paths need a reference_pipeline in the model config (the test '
                               'pipeline) to load the reference images')
        items = []
        for path in paths:
            results = dict(img_path=path, seg_map_path=None, reduce_zero_label=False, seg_fields=[],
                           anomaly_label=0)
            for transform in self.reference_pipeline:
                results = transform(results)
            items.append(results)
        batch = dict(inputs=[it['inputs'] for it in items], data_samples=[it['data_samples'] for it in items])
        inputs = self.data_preprocessor(batch, False)['inputs']
        return inputs if device is None else inputs.to(device)

    def memory_for_paths(self, paths, device):
        """The memory of a reference set, built once and cached (``memory_cache`` sets)."""
        key = tuple(paths)
        if key in self._memories:
            self._memories.move_to_end(key)
            return self._memories[key]
        memory = self.build_memory(self.load_references(key, device))
        self.cache_memory(key, memory)
        return memory

    def cache_memory(self, paths, memory):
        """Keep ``memory`` as the memory of the reference set ``paths`` (e.g. built from in-memory images
        by :meth:`build_memory`): samples whose ``reference_paths`` are ``paths`` then use it."""
        self._memories[tuple(paths)] = memory
        self._memories.move_to_end(tuple(paths))
        while len(self._memories) > self.memory_cache:
            self._memories.popitem(last=False)

    @staticmethod
    def _reference_groups(data_samples, batch_size):
        """(start, end, reference paths or None) of consecutive images sharing their references."""
        keys = [None] * batch_size if data_samples is None else [
            tuple(s.metainfo['reference_paths']) if s.metainfo.get('reference_paths') else None
            for s in data_samples]
        groups, start = [], 0
        for i in range(1, batch_size + 1):
            if i == batch_size or keys[i] != keys[start]:
                groups.append((start, i, keys[start]))
                start = i
        return groups

    def run_head(self, inputs, data_samples=None, memory=None):
        """(B, 3, H, W) -> ``anomaly_map`` (B, H, W) and ``image_scores`` (B,) (and, for one group, every
        entry of the head's output); ``memory`` (from :meth:`build_memory`) serves the whole batch."""
        names = self.class_names(data_samples, inputs.shape[0])
        groups = ([(0, inputs.shape[0], None)] if memory is not None
                  else self._reference_groups(data_samples, inputs.shape[0]))
        outs = []
        for start, end, paths in groups:
            group_memory = memory if memory is not None else (
                self.memory_for_paths(paths, inputs.device) if paths else None)
            with self._autocast(inputs.device):
                outs.append(upcast(self.head(self.backbone, inputs[start:end], names[start:end], group_memory)))
        if len(outs) == 1:
            return outs[0]
        return {key: torch.cat([o[key] for o in outs]) for key in ('anomaly_map', 'image_scores')}

    @torch.no_grad()
    def predict(self, inputs, data_samples=None, memory=None):
        """Inputs from the data preprocessor -> SegDataSamples with ``anomaly_map`` and ``pred_score``."""
        out = self.run_head(inputs, data_samples, memory)
        return pack_anomaly_results(out['anomaly_map'], out['image_scores'], data_samples, inputs.shape[-2:],
                                    self.test_cfg.get('threshold'))
