"""Protocol cards: what a config really evaluates with, read from the built model and test pipeline.

Call graph::

    protocol_card(cfg)
      └─ build_for_card(cfg)        the model with random weights (nothing read or downloaded)
      └─ classes / templates        model.vocabulary (after background names), text classifier, seen flags
      └─ inference                  model.test_cfg (whole / slide windows)
      └─ preprocessing              the built test-pipeline transforms (decoding, resize) and the model's
                                    data preprocessor (normalisation)
      └─ rules                      background rule, MaskCLIP+ kspd, SAM refinement
      └─ evaluation                 dataset ignore index / zero-label reduction, metrics
      └─ source                     vocabulary header, template set, the configs' model_source /
                                    data_source / sam_source dicts

Nothing is restated from the config text where the built objects hold it: a changed default in a class
shows up in the card.
"""
import contextlib
import copy
import importlib
import logging

from mmengine.logging import MMLogger

from ovseg.apis.model_loading import strip_weight_sources
from ovseg.registry import MODELS, TRANSFORMS
from ovseg.text import TEMPLATE_SOURCES, TEMPLATES

COMBINE = 'prompt embedding = normalised mean over templates; class score = max over its prompts'
SOURCE_KEYS = ('model_source', 'data_source', 'sam_source')


@contextlib.contextmanager
def _quiet():
    """Silence the warnings of building without weights (open_clip, mmengine): they say nothing here."""
    logger = MMLogger.get_current_instance()
    root = logging.getLogger()
    levels = logger.level, root.level
    logger.setLevel(logging.ERROR)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(levels[0])
        root.setLevel(levels[1])


def build_for_card(cfg):
    """Build ``cfg.model`` on the CPU with random weights (nothing is read or downloaded).

    Not on the meta device: what constructors compute (FC-CLIP's seen flags, thing masks) would then be
    unreadable meta tensors.

    Returns:
        nn.Module: the model.
    """
    for name in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(name)
    model_cfg = copy.deepcopy(cfg.model)
    strip_weight_sources(model_cfg)
    with _quiet():
        return MODELS.build(model_cfg)


def _template_name(templates):
    return next((name for name, value in TEMPLATES.items() if tuple(value) == tuple(templates)), None)


def _prompt_sets(model):
    """Anomaly heads: the (normal, anomalous, templates) prompt set of a submodule, if any."""
    for module in model.modules():
        prompt_set = getattr(module, 'prompt_set', None)
        if isinstance(prompt_set, dict) and {'normal', 'anomalous', 'templates'} <= set(prompt_set):
            return prompt_set
    return None


def classes_and_templates(model):
    """(classes, templates, template set name, vocabulary) of a built model.

    ``classes`` lists, in label order, ``dict(name, prompts, seen)``: ``prompts`` are the names whose
    embeddings the class combines, in order; ``seen`` is FC-CLIP's seen flag (None for other models).
    Anomaly models list their normal / anomalous states.
    """
    vocab = getattr(model, 'vocabulary', None)
    classifier = getattr(model, 'text_classifier', None)
    if vocab is not None and hasattr(vocab, 'classes'):
        seen = getattr(model, 'seen_mask', None)
        seen = [bool(s) for s in seen.tolist()] if seen is not None else [None] * len(vocab)
        classes = [dict(name=cls[0], prompts=list(cls), seen=flag) for cls, flag in zip(vocab.classes, seen)]
        templates = list(getattr(classifier, 'templates', ()))
        return classes, templates, _template_name(templates), vocab
    prompt_set = _prompt_sets(model)
    if prompt_set is not None:
        classes = [dict(name=state, prompts=list(prompt_set[state]), seen=None)
                   for state in ('normal', 'anomalous')]
        return classes, list(prompt_set['templates']), None, None
    return [], [], None, None


def _pair(value):
    if value is None:
        return None
    return [int(value), int(value)] if isinstance(value, (int, float)) else [int(v) for v in value]


def inference(model):
    """``dict(mode, crop, stride)`` (crop / stride as [h, w]; None for whole-image inference). 'splice':
    windows whose features are averaged into one map before classification (Trident)."""
    test_cfg = dict(getattr(model, 'test_cfg', None) or {})
    mode = test_cfg.get('mode', 'whole')
    if mode not in ('slide', 'splice'):
        return dict(mode='whole', crop=None, stride=None)
    return dict(mode=mode, crop=_pair(test_cfg.get('crop_size')), stride=_pair(test_cfg.get('stride')))


def _resize_entry(transform):
    name = type(transform).__name__
    scale = getattr(transform, 'scale', None)
    keep = bool(getattr(transform, 'keep_ratio', False))
    backend = getattr(transform, 'backend', 'torchvision' if name == 'TorchvisionResize' else None)
    antialias = getattr(transform, 'antialias', backend == 'pillow')  # PIL always antialiases
    entry = dict(transform=name, scale_wh=list(scale) if scale is not None else None, keep_ratio=keep,
                 backend=backend, interpolation=getattr(transform, 'interpolation', None),
                 antialias=bool(antialias))
    if scale is not None and keep:
        entry['short_side'], entry['long_side_max'] = min(scale), max(scale)
    elif scale is not None:
        entry['size_hw'] = [int(scale[1]), int(scale[0])]
    return entry


def preprocessing(cfg, model):
    """Image decoding and resize of the built test pipeline, normalisation of the data preprocessor."""
    loader = cfg.get('test_dataloader') or {}
    pipeline = [TRANSFORMS.build(copy.deepcopy(t)) for t in loader.get('dataset', {}).get('pipeline', [])]
    decode = next((getattr(t, 'imdecode_backend', None) for t in pipeline
                   if type(t).__name__.startswith('LoadImage')), None)
    resizes = [_resize_entry(t) for t in pipeline if 'Resize' in type(t).__name__]
    pre_cfg = cfg.model.get('data_preprocessor')
    pre = MODELS.build(copy.deepcopy(pre_cfg)) if isinstance(pre_cfg, dict) else getattr(
        model, 'data_preprocessor', None)
    mean, std = getattr(pre, 'mean', None), getattr(pre, 'std', None)
    normalize = None
    if mean is not None and getattr(pre, '_enable_normalize', True):
        normalize = dict(mean=[round(float(v), 6) for v in mean.flatten()],
                         std=[round(float(v), 6) for v in std.flatten()],
                         rgb=bool(getattr(pre, 'channel_conversion', False)))
    return dict(decode=decode, resize=resizes[0] if len(resizes) == 1 else (resizes or None),
                normalize=normalize, size_divisor=getattr(model, 'size_divisor', None))  # model may be None


def rules(model, classes):
    """Test-time rules of a built model: background rule, MaskCLIP+ kspd, SAM refinement, scores."""
    out = {}
    head = getattr(model, 'head', None)
    if getattr(head, 'logit_scale', None) is not None:
        out['scores'] = f'softmax over classes of {float(head.logit_scale):g} x cosine'
    background = getattr(model, 'background', None)
    index = getattr(model, 'background_index', None)
    if isinstance(background, dict) and index is not None:
        rule = dict(class_index=int(index), class_name=classes[index]['name'] if classes else None)
        if background.get('thresh') is not None:
            rule['top_probability_below'] = float(background['thresh'])
        if getattr(model, 'refiner', None) is not None and background.get('thresh') is not None:
            rule['objectness_at_most'] = float(background.get('objectness_thresh', 0.5))
        if background.get('names'):
            rule['scored_with_names'] = True
        out['background_rule'] = rule
    else:
        out['background_rule'] = None
    if getattr(model, 'kspd', None):
        out['kspd'] = dict(model.kspd)
    refiner = getattr(model, 'sam_refiner', None)
    if refiner is not None:
        out['sam_refinement'] = {key: getattr(refiner, key) for key in (
            'resolution', 'image_multiple', 'failed_rule', 'mask_prompt_layout', 'coarse_thresh',
            'minimal_area', 'mask_coeff', 'iou_thresh', 'down_ratio') if hasattr(refiner, key)}
    ensemble = getattr(model, 'ensemble', None)
    if isinstance(ensemble, dict):
        out['ensemble'] = dict(ensemble)
    return out


def _built_or_none(registry, cfg):
    try:
        with _quiet():
            return registry.build(cfg)
    except Exception:  # noqa: BLE001  files the card does not need (annotations, JSONs) may be absent
        return None


def _reduce_zero_label(dataset_cfg):
    """The dataset's zero-label reduction: from the dataset built lazily (no annotation is read), else
    from the first constructor default along its class hierarchy."""
    import inspect

    from ovseg.registry import DATASETS
    lazy = dict(copy.deepcopy(dataset_cfg), lazy_init=True, pipeline=[])
    lazy.pop('instance_ann_file', None)
    dataset = _built_or_none(DATASETS, lazy)
    if dataset is not None:
        return bool(dataset.reduce_zero_label)
    if 'reduce_zero_label' in dataset_cfg:
        return bool(dataset_cfg['reduce_zero_label'])
    cls = DATASETS.get(dataset_cfg.get('type')) if dataset_cfg.get('type') else None
    for klass in (cls.__mro__ if cls is not None else ()):
        param = inspect.signature(klass.__init__).parameters.get('reduce_zero_label')
        if param is not None and param.default is not inspect.Parameter.empty:
            return bool(param.default)
    return None


def _metric_entry(metric_cfg):
    from ovseg.registry import METRICS
    built = _built_or_none(METRICS, copy.deepcopy(metric_cfg))
    entry = dict(type=metric_cfg.get('type'))
    for key in ('convention', 'ignore_index', 'ann_file', 'eval_size', 'fpr_limit'):
        value = getattr(built, key, None) if built is not None else metric_cfg.get(key)
        if value is not None:
            entry[key] = list(value) if isinstance(value, tuple) else value
    return entry


def evaluation(cfg):
    """Dataset, ignore index, zero-label reduction and metrics (built, read from the objects)."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset', {})
    evaluators = cfg.get('test_evaluator') or []
    evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
    metrics = [_metric_entry(ev) for ev in evaluators]
    ignore = next((m['ignore_index'] for m in metrics if 'ignore_index' in m), None)
    extra = {k: v for k, v in dataset.items() if k in ('instance_ann_file',)}
    return dict(dataset=dataset.get('type'), ignore_index=ignore,
                reduce_zero_label=_reduce_zero_label(dataset), metrics=metrics, **extra)


def sources(cfg, vocab, template_name):
    """What each item follows: the vocabulary file's header, the template set and the configs' sources."""
    out = {}
    if vocab is not None:
        out['classes'] = (f'ovseg vocabulary {vocab.name!r}: {vocab.source}' if vocab.name
                          else 'a vocabulary given in the config')
    if template_name is not None:
        out['templates'] = TEMPLATE_SOURCES.get(template_name, template_name)
    for key in SOURCE_KEYS:
        for item, text in (cfg.get(key) or {}).items():
            out[item] = text
    return out


def protocol_card(cfg, config_path=None):
    """The protocol card of a config (an mmengine ``Config``): a JSON-serialisable dict.

    Keys: ``config``, ``model``, ``classes`` (label order: ``name``, ``prompts``, ``seen``), ``combine``,
    ``templates``, ``template_set``, ``inference`` (``mode``, ``crop`` [h, w], ``stride`` [h, w]),
    ``preprocessing`` (``decode``, ``resize``: scale / short and long side / size, keep_ratio, backend,
    interpolation, antialias; ``normalize``), ``rules`` (scores, ``background_rule``, kspd, SAM
    refinement, ensemble), ``evaluation`` (dataset, ``ignore_index``, ``reduce_zero_label``, metrics with
    their convention) and ``source`` (item -> repository, commit and file it follows).
    """
    has_test = bool(cfg.get('test_dataloader'))
    try:
        model = build_for_card(cfg)
    except Exception as err:  # noqa: BLE001
        if has_test:
            raise
        # a training config may need files only training reads (teachers' weights): no evaluation part
        return dict(config=str(config_path) if config_path is not None else None, model=cfg.model.get('type'),
                    vocabulary=None, classes=[], combine=None, templates=[], template_set=None,
                    inference=None, preprocessing=None, rules={}, evaluation=None, source={},
                    note=f'training config; model not built without its training files: {err}')
    classes, templates, template_name, vocab = classes_and_templates(model)
    return dict(
        config=str(config_path) if config_path is not None else None,
        model=type(model).__name__,
        vocabulary=getattr(vocab, 'name', None),
        classes=classes,
        combine=COMBINE if vocab is not None else None,
        templates=templates,
        template_set=template_name,
        inference=inference(model),
        preprocessing=preprocessing(cfg, model) if has_test else None,
        rules=rules(model, classes),
        evaluation=evaluation(cfg) if has_test else None,
        source=sources(cfg, vocab, template_name),
        note=None if has_test else 'training config: no test dataloader, no evaluation protocol')
