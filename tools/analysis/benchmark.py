"""Inference speed, memory and per-stage cost of any segmentor config, with random or real weights.

Usage::

    python tools/analysis/benchmark.py CONFIG [--size published|small] [--shape H W] [--small-side 224]
        [--mode whole|slide] [--crop N --stride N] [--batch N] [--image natural|random] [--repeats N]
        [--warmup N] [--random-weights] [--templates NAME] [--precision fp32|bf16|fp16]
        [--device cpu|cuda] [--threads N] [--no-stages] [--json OUT] [--cfg-options k=v ...]

Every model type in configs/: ``OVSegmentor`` (MaskCLIP, CLIP-DINOiser, + SAM refinement),
``SAMProposalSegmentor``, ``FCCLIPSegmentor``, the anomaly segmentors (WinCLIP, AnoVL with or without its
test-time adapter, AnomalyCLIP, MuSc, WinCLIP+ and AdaptCLIP with their reference memories). Each repeat runs
``model.test_step`` on one batch of uint8 images
(data preprocessor, inference, result packing): end to end except data loading. The images are
scikit-image photos resized to the input size (``--image natural``, default: SAM proposals and SAM
refinement see structure) or uniform noise (``--image random``). A batch is ``--batch`` images (default
1); MuSc scores a whole category at once and gets one category batch (default ``max(8, its minimum)``).
Figures are per image: images/s, wall latency (mean, p50, p90, min: batch time / batch size), CPU time
summed over threads (robust to other processes sharing the cores), peak memory (CUDA:
``torch.cuda.max_memory_allocated``; CPU: peak RSS of the timed loop from the kernel's VmHWM after
resetting it, else ``ru_maxrss``).

Input size: ``--size published`` (default) is the image the config's test pipeline gives the model, its
``Resize`` applied to a 4:3 640x480 reference image (2048x1024 for Cityscapes; ``keep_ratio=False``: the
scale itself), e.g. 448x597 for MaskCLIP on ADE20K, 800x1067 for FC-CLIP, 518x518 for MuSc;
``--size small`` scales it to a short side of ``--small-side`` (224); ``--shape H W`` sets it. The
config's ``test_cfg`` (whole / slide, crop, stride) is kept unless overridden.

``--random-weights`` strips every pretrained tag, checkpoint path and 'Pretrained' init_cfg (CLIP, SAM,
FC-CLIP, ...: :func:`ovseg.apis.inferencer.strip_weight_sources`), so nothing is read or downloaded.
Data-dependent work (SAM masks passing the thresholds, regions SAM refines) then differs from pretrained
weights; it is counted in ``counts_per_image``. ``--templates single`` gives every ``OVTextClassifier``
one template (the per-image cost does not depend on them).

Text embeddings (the vocabulary's, or an anomaly head's prompts) are computed once before the warm-up
and reported separately (``text_encoding_s``); so is the memory of few-shot anomaly models (``--shots``
reference images, default the config's ``references.k_shot``, other scikit-image photos of the same size:
``memory_build_s``), which every timed image is then scored against. ``stages_ms`` is the exclusive ms per
image of every stage
of :mod:`ovseg.utils.stage_timer` (top-level child modules, FC-CLIP's in-vocabulary classifier, SAM's
image encoder, OVSegmentor ``head_rules`` / ``upsample``, the anomaly heads' steps) plus ``other``, the
remainder: the stages sum to the mean latency.
"""
import argparse
import inspect
import json
import math
import os
import platform
import resource
import time

import numpy as np
import torch
from mmengine.config import Config, DictAction  # light: mmseg and ovseg are imported where used (fast --help)

SMALL_SIDE = 224
# (width, height) of the reference image that the test pipeline's Resize is applied to.
REFERENCE_IMAGE = (640, 480)
WIDE_REFERENCE_IMAGE = (2048, 1024)  # Cityscapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark the inference of a segmentor config.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--size', choices=['published', 'small'], default='published',
                        help="input size: the config's test size (default) or its short side scaled to "
                             '--small-side')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (overrides --size)')
    parser.add_argument('--small-side', type=int, default=SMALL_SIDE, help='short side of --size small (224)')
    parser.add_argument('--mode', choices=['whole', 'slide'], help='override model.test_cfg.mode')
    parser.add_argument('--crop', type=int, help='slide window size (override test_cfg.crop_size)')
    parser.add_argument('--stride', type=int, help='slide stride (override test_cfg.stride)')
    parser.add_argument('--batch', type=int, help='images per test_step (default 1; MuSc: max(8, minimum))')
    parser.add_argument('--image', choices=['natural', 'random'], default='natural',
                        help="input: scikit-image photos resized to the size (default) or uniform noise")
    parser.add_argument('--shots', type=int,
                        help="few-shot anomaly models: reference images (default: the config's k_shot)")
    parser.add_argument('--repeats', type=int, default=10, help='timed batches. Default 10')
    parser.add_argument('--warmup', type=int, default=2, help='untimed batches first. Default 2')
    parser.add_argument('--random-weights', action='store_true',
                        help='strip pretrained tags / checkpoints everywhere (nothing is read or downloaded)')
    parser.add_argument('--templates', help="set every OVTextClassifier's templates (e.g. 'single')")
    parser.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], help='override model precision')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    parser.add_argument('--no-stages', action='store_true', help='skip the per-stage split')
    parser.add_argument('--json', help='write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------ config
def load_config(path, cfg_options=None, random_weights=False, templates=None):
    """Config with the overrides; weight sources stripped and text templates replaced on request."""
    from ovseg.apis.model_loading import set_text_templates, strip_weight_sources
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if random_weights:
        strip_weight_sources(cfg.model)
    if templates:
        set_text_templates(cfg.model, templates)
    return cfg


def config_test_pipeline(cfg):
    """The config's test pipeline (test_dataloader's, else ``test_pipeline``), or None."""
    loader = cfg.get('test_dataloader')
    pipeline = loader.get('dataset', {}).get('pipeline') if isinstance(loader, dict) else None
    return pipeline if pipeline is not None else cfg.get('test_pipeline')


def published_shape(cfg, reference=None):
    """(H, W) the test pipeline's Resize gives a reference image (see the module docstring)."""
    from mmcv.image import rescale_size
    resizes = [t for t in (config_test_pipeline(cfg) or [])
               if t.get('type') in ('Resize', 'TorchvisionResize') and t.get('scale')]
    if not resizes:
        raise ValueError('The config has no test pipeline with a Resize scale: give --shape H W.')
    resize = resizes[0]
    scale = tuple(int(s) for s in (resize['scale'] if not isinstance(resize['scale'], int)
                                   else (resize['scale'],) * 2))
    if not resize.get('keep_ratio', False):
        return scale[1], scale[0]  # mmcv scales are (w, h)
    if reference is None:
        dataset = str(cfg.get('test_dataloader', {}).get('dataset', {}).get('type', ''))
        reference = WIDE_REFERENCE_IMAGE if 'cityscapes' in dataset.lower() else REFERENCE_IMAGE
    width, height = rescale_size(tuple(reference), scale)
    return height, width


def small_shape(shape, side=SMALL_SIDE):
    """``shape`` scaled so that its short side is ``side``."""
    factor = side / min(shape)
    return tuple(int(s * factor + 0.5) for s in shape)


def resolve_shape(cfg, size='published', shape=None, small_side=SMALL_SIDE):
    if shape:
        return tuple(int(s) for s in shape)
    published = published_shape(cfg)
    return published if size == 'published' else small_shape(published, small_side)


def supports_precision(model_type):
    """Whether the registered class (or a base class) takes a ``precision`` argument."""
    from ovseg.registry import MODELS
    cls = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    return cls is not None and any('precision' in inspect.signature(k.__init__).parameters
                                   for k in cls.__mro__ if '__init__' in vars(k))


def build_model(args, cfg=None):
    """Model from the config with the command-line overrides, in eval mode on ``args.device``."""
    from ovseg.registry import MODELS
    if cfg is None:
        cfg = load_config(args.config, args.cfg_options, args.random_weights, args.templates)
    model_cfg = cfg.model
    if any(v is not None for v in (args.mode, args.crop, args.stride)):
        test_cfg = model_cfg.setdefault('test_cfg', {})
        for key, value in (('mode', args.mode), ('crop_size', args.crop), ('stride', args.stride)):
            if value is not None:
                test_cfg[key] = value
    if args.precision is not None:
        if supports_precision(model_cfg['type']):
            model_cfg['precision'] = args.precision
        elif args.precision != 'fp32':
            raise SystemExit(f"{model_cfg['type']} has no precision option; only fp32 can be benchmarked.")
    torch.manual_seed(0)
    return MODELS.build(model_cfg).to(args.device).eval()


# ------------------------------------------------------------------------------------------ inputs
def default_batch(model):
    """1, or for heads that score a whole category at once (MuSc) max(8, their minimum)."""
    head = getattr(model, 'head', None)
    if getattr(head, 'needs_category_batch', False):
        return max(8, int(getattr(head, 'min_images', 1)))
    return 1


NATURAL_IMAGES = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry')


def natural_image(index, shape):
    """(3, H, W) uint8 BGR: scikit-image's ``NATURAL_IMAGES[index % 5]`` centre-cropped to the aspect of
    ``shape`` and resized (PIL bicubic)."""
    import skimage.data
    from PIL import Image
    height, width = shape
    img = Image.fromarray(getattr(skimage.data, NATURAL_IMAGES[index % len(NATURAL_IMAGES)])())
    scale = max(width / img.width, height / img.height)
    crop_w, crop_h = min(img.width, round(width / scale)), min(img.height, round(height / scale))
    left, top = (img.width - crop_w) // 2, (img.height - crop_h) // 2
    img = img.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.ascontiguousarray(np.asarray(img)[..., ::-1])).permute(2, 0, 1).contiguous()


def random_batch(shape, device, seed=0, batch=1, image='random'):
    """``batch`` uint8 BGR images as the data preprocessor expects them: {'inputs', 'data_samples'}.

    Args:
        image (str): 'random' (uniform noise) or 'natural' (:func:`natural_image`).
    """
    from mmseg.structures import SegDataSample
    height, width = shape
    gen = torch.Generator().manual_seed(seed)
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))
    if image == 'natural':
        images = [natural_image(i, shape) for i in range(batch)]
    else:
        images = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
                  for _ in range(batch)]
    # ori_img: the original RGB image, for SAM refinement at the original resolution (Trident's protocol)
    return dict(inputs=[x.to(device) for x in images],
                data_samples=[SegDataSample(metainfo=dict(meta, ori_img=x.flip(0).permute(1, 2, 0).numpy()))
                              for x in images])


# ------------------------------------------------------------------------------------------ memory


def peak_memory_mib(device, peak_reset):
    """Peak memory in MiB and how it was measured."""
    from ovseg.utils.process_memory import rss_mib
    if str(device).startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20, 'torch.cuda.max_memory_allocated'
    peak = rss_mib('VmHWM')
    if peak_reset and not math.isnan(peak):
        return peak, 'peak RSS of the timed loop (VmHWM)'
    # ru_maxrss is in KiB on Linux and covers the whole process (model building included).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'peak RSS of the process (ru_maxrss)'


# --------------------------------------------------------------------------------------------- run
def text_call(model):
    """Zero-argument callable computing the model's text embeddings once, or None (no text)."""
    if hasattr(model, 'class_embeddings'):
        return model.class_embeddings
    head, backbone = getattr(model, 'head', None), getattr(model, 'backbone', None)
    names = [getattr(model, 'default_class_name', 'object')]
    for method in ('text_embeddings', 'text_features'):
        fn = getattr(head, method, None)
        if fn is not None:
            params = inspect.signature(fn).parameters
            return (lambda: fn(backbone, names)) if 'class_names' in params else (lambda: fn(backbone))
    return None


def _time_text(model, device):
    from ovseg.utils.stage_timer import sync as _sync
    fn = text_call(model)
    if fn is None:
        return None
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    _sync(device)
    return time.perf_counter() - start


def reference_shots(cfg):
    """k of a few-shot config (``test_dataloader.dataset.references.k_shot``), else 0."""
    loader = cfg.get('test_dataloader')
    refs = (loader.get('dataset', {}).get('references') if isinstance(loader, dict) else None) or {}
    return int(refs.get('k_shot') or 0)


def _reference_memory(model, args, batch):
    """Few-shot models: build a memory of ``args.shots`` other photos, let ``batch`` use it; seconds."""
    from ovseg.utils.stage_timer import sync as _sync
    if not args.shots or not hasattr(model, 'cache_memory'):
        return None
    extra = random_batch(args.shape, args.device, seed=1, batch=len(batch['inputs']) + args.shots,
                         image=args.image)
    refs = dict(inputs=extra['inputs'][-args.shots:], data_samples=extra['data_samples'][-args.shots:])
    _sync(args.device)
    start = time.perf_counter()
    memory = model.build_memory(model.data_preprocessor(refs, False)['inputs'])
    _sync(args.device)
    key = tuple(f'benchmark_reference_{i}' for i in range(args.shots))
    model.cache_memory(key, memory)
    for sample in batch['data_samples']:
        sample.set_metainfo(dict(reference_paths=key))
    return time.perf_counter() - start


def run_benchmark(model, args):
    """Warm up, then time ``args.repeats`` batches; return the results dict (per-image figures)."""
    from ovseg.utils.process_memory import reset_peak_rss, rss_mib
    from ovseg.utils.stage_timer import StageTimer, sync as _sync
    device, batch_size = args.device, args.batch
    text_s = _time_text(model, device)
    batch = random_batch(args.shape, device, batch=batch_size, image=args.image)
    memory_s = _reference_memory(model, args, batch)
    with torch.no_grad():
        for _ in range(args.warmup):
            model.test_step(batch)
    timer = StageTimer(model, device) if not args.no_stages else None
    if str(device).startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    rss_before = rss_mib('VmRSS')
    peak_reset = reset_peak_rss()
    times = []
    cpu_start = time.process_time()
    with torch.no_grad():
        for _ in range(args.repeats):
            _sync(device)
            start = time.perf_counter()
            model.test_step(batch)
            _sync(device)
            times.append(time.perf_counter() - start)
    images = len(times) * batch_size
    # CPU time of all threads: less sensitive than wall time to other processes sharing the cores.
    cpu_ms = 1000.0 * (time.process_time() - cpu_start) / images
    memory, memory_how = peak_memory_mib(device, peak_reset)
    if timer is not None:
        timer.remove()
    lat = np.asarray(times) * 1000.0 / batch_size
    result = dict(images_per_s=images / float(np.sum(times)), latency_ms_mean=float(lat.mean()),
                  latency_ms_p50=float(np.percentile(lat, 50)), latency_ms_p90=float(np.percentile(lat, 90)),
                  latency_ms_min=float(lat.min()), batch_latency_ms_mean=float(lat.mean() * batch_size),
                  cpu_ms_per_image=cpu_ms, peak_memory_mib=memory, peak_memory_how=memory_how,
                  rss_before_timing_mib=rss_before, text_encoding_s=text_s, memory_build_s=memory_s,
                  stages_ms=timer.split_ms(float(np.sum(times)), images) if timer else None)
    if timer is not None and timer.counts:
        result['counts_per_image'] = {k: v / images for k, v in timer.counts.items()}
    return result


def machine_info(device='cpu'):
    """CPU model, cores, torch version and threads (and the GPU when used)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    info = dict(cpu=cpu, cpu_count=os.cpu_count(),
                cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
                torch=torch.__version__, threads=torch.get_num_threads(),
                omp_num_threads=os.environ.get('OMP_NUM_THREADS'), python=platform.python_version(),
                platform=platform.platform())
    if str(device).startswith('cuda') and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name()
    return info


def describe_setup(model, args):
    """The settings the figures depend on."""
    test_cfg = dict(getattr(model, 'test_cfg', {}) or {})
    info = machine_info(args.device)
    size = 'custom' if getattr(args, 'shape_given', False) else args.size
    return dict(config=args.config, model_type=type(model).__name__, shape=list(args.shape), size=size,
                image=args.image, batch=args.batch, shots=getattr(args, 'shots', None),
                mode=test_cfg.get('mode'),
                crop_size=test_cfg.get('crop_size'), stride=test_cfg.get('stride'),
                precision=getattr(model, 'precision', 'fp32'),
                device=str(args.device), threads=info['threads'], random_weights=args.random_weights,
                templates=args.templates, repeats=args.repeats, warmup=args.warmup,
                params_m=sum(p.numel() for p in model.parameters()) / 1e6, torch=info['torch'],
                cpu=info['cpu'], cpu_count=info['cpu_count'])


def format_table(result):
    """Two-column text table of a results dict (setup + figures)."""
    rows = []
    for key, value in result.items():
        if isinstance(value, dict):
            rows += [(f'{key}.{k}', v) for k, v in value.items()]
        else:
            rows.append((key, value))
    width = max(len(k) for k, _ in rows)
    return '\n'.join(f'{k:<{width}}  {f"{v:.2f}" if isinstance(v, float) else v}' for k, v in rows)


def main(argv=None):
    """Run the benchmark; print a table; return the results dict."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.warmup < 1:
        raise SystemExit('--warmup must be at least 1 (the first batch pays for lazy initialisation).')
    if args.repeats < 1:
        raise SystemExit('--repeats must be at least 1.')
    cfg = load_config(args.config, args.cfg_options, args.random_weights, args.templates)
    args.shape_given = args.shape is not None
    args.shape = resolve_shape(cfg, args.size, args.shape, args.small_side)
    model = build_model(args, cfg)
    args.batch = args.batch or default_batch(model)
    args.shots = reference_shots(cfg) if args.shots is None else args.shots
    result = describe_setup(model, args)
    result.update(run_benchmark(model, args))
    print(format_table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
