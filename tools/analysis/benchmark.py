"""Inference speed and memory of a segmentor config on random images.

Usage::

    python tools/analysis/benchmark.py CONFIG [--shape H W] [--mode whole|slide] [--crop N --stride N]
        [--repeats N] [--warmup N] [--random-weights] [--precision fp32|bf16] [--device cpu|cuda]
        [--threads N] [--json OUT] [--cfg-options k=v ...]

Each repeat runs ``model.test_step`` on one random uint8 image (data preprocessor, inference, result
packing), so the figures are end to end except data loading: images/s, wall latency (mean, p50, p90,
min), CPU time per image summed over threads (robust to other processes sharing the cores), and peak
memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: peak RSS of the timed loop, read from the kernel's
VmHWM after resetting it, else the process's ``ru_maxrss``). The vocabulary's text embeddings are
computed once before the warm-up and reported separately (they are cached per vocabulary). For an
``OVSegmentor`` the time is also split into backbone (+ refiner), head + test-time rules, upsampling of
the score maps, and the rest (slide stitching, preprocessing, result packing).
"""
import argparse
import json
import os
import platform
import resource
import time

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmseg.structures import SegDataSample

from ovseg.registry import MODELS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark the inference of a segmentor config.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, default=(448, 448), metavar=('H', 'W'),
                        help='input image size (after the test pipeline). Default 448 448')
    parser.add_argument('--mode', choices=['whole', 'slide'], help='override model.test_cfg.mode')
    parser.add_argument('--crop', type=int, help='slide window size (override test_cfg.crop_size)')
    parser.add_argument('--stride', type=int, help='slide stride (override test_cfg.stride)')
    parser.add_argument('--repeats', type=int, default=10, help='timed images. Default 10')
    parser.add_argument('--warmup', type=int, default=2, help='untimed images first. Default 2')
    parser.add_argument('--random-weights', action='store_true',
                        help='drop pretrained/checkpoint from the backbone (nothing is downloaded)')
    parser.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], help='override model precision')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    parser.add_argument('--no-stages', action='store_true', help='skip the per-stage split')
    parser.add_argument('--json', help='write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings')
    return parser.parse_args(argv)


def build_model(args):
    """Model from the config with the command-line overrides, in eval mode on ``args.device``."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model_cfg = cfg.model
    if args.random_weights:
        model_cfg.backbone.pop('pretrained', None)
        model_cfg.backbone.pop('checkpoint', None)
        model_cfg.pop('init_cfg', None)
        if 'text_classifier' in model_cfg:
            model_cfg.text_classifier['cache_dir'] = None  # random text weights: nothing worth caching
    test_cfg = model_cfg.setdefault('test_cfg', {})
    for key, value in (('mode', args.mode), ('crop_size', args.crop), ('stride', args.stride)):
        if value is not None:
            test_cfg[key] = value
    if args.precision is not None:
        model_cfg['precision'] = args.precision
    torch.manual_seed(0)
    return MODELS.build(model_cfg).to(args.device).eval()


def random_batch(shape, device, seed=0):
    """One random uint8 BGR image as the data preprocessor expects it: {'inputs', 'data_samples'}."""
    height, width = shape
    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
    meta = dict(img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width))
    return dict(inputs=[image.to(device)], data_samples=[SegDataSample(metainfo=meta)])


def _sync(device):
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


class StageTimer:
    """Times an OVSegmentor's stages by wrapping its methods on this instance only."""

    STAGES = {'backbone': 'extract_feat', 'head_rules': 'scores_from_features', 'decode': 'encode_decode'}

    def __init__(self, model, device):
        self.device = device
        self.totals = {name: 0.0 for name in self.STAGES}
        self.enabled = all(hasattr(model, method) for method in self.STAGES.values())
        if self.enabled:
            for name, method in self.STAGES.items():
                setattr(model, method, self._wrap(name, getattr(model, method)))

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync(self.device)
            self.totals[name] += time.perf_counter() - start
            return out
        return timed

    def reset(self):
        self.totals = {name: 0.0 for name in self.STAGES}

    def split_ms(self, total_s, images):
        """Mean ms per image: backbone, head + rules, upsampling (rest of encode_decode), other."""
        if not self.enabled:
            return None
        per = {k: 1000.0 * v / images for k, v in self.totals.items()}
        return dict(backbone=per['backbone'], head_rules=per['head_rules'],
                    upsample=per['decode'] - per['backbone'] - per['head_rules'],
                    other=1000.0 * total_s / images - per['decode'])


def _reset_peak_rss():
    """Reset the kernel's peak-RSS counter (VmHWM) so the peak covers the timed loop only (Linux)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_memory_mib(device, peak_reset):
    """Peak memory in MiB and how it was measured."""
    if str(device).startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20, 'torch.cuda.max_memory_allocated'
    if peak_reset:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024, 'peak RSS of the timed loop (VmHWM)'
    # ru_maxrss is in KiB on Linux and covers the whole process (model building included).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'peak RSS of the process (ru_maxrss)'


def _time_text(model, device):
    if not hasattr(model, 'class_embeddings'):
        return None
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        model.class_embeddings()
    _sync(device)
    return time.perf_counter() - start


def run_benchmark(model, args):
    """Warm up, then time ``args.repeats`` images; return the results dict."""
    device = args.device
    text_s = _time_text(model, device)
    batch = random_batch(args.shape, device)
    with torch.no_grad():
        for _ in range(args.warmup):
            model.test_step(batch)
    timer = StageTimer(model, device) if not args.no_stages else None
    if str(device).startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    peak_reset = _reset_peak_rss()
    times = []
    cpu_start = time.process_time()
    with torch.no_grad():
        for _ in range(args.repeats):
            _sync(device)
            start = time.perf_counter()
            model.test_step(batch)
            _sync(device)
            times.append(time.perf_counter() - start)
    # CPU time of all threads: less sensitive than wall time to other processes sharing the cores.
    cpu_ms = 1000.0 * (time.process_time() - cpu_start) / len(times)
    memory, memory_how = peak_memory_mib(device, peak_reset)
    lat = np.asarray(times) * 1000.0
    return dict(images_per_s=len(times) / float(np.sum(times)), latency_ms_mean=float(lat.mean()),
                latency_ms_p50=float(np.percentile(lat, 50)), latency_ms_p90=float(np.percentile(lat, 90)),
                latency_ms_min=float(lat.min()), cpu_ms_per_image=cpu_ms, peak_memory_mib=memory,
                peak_memory_how=memory_how,
                text_encoding_s=text_s,
                stages_ms=timer.split_ms(float(np.sum(times)), len(times)) if timer else None)


def describe_setup(model, args):
    """The settings the figures depend on."""
    test_cfg = dict(getattr(model, 'test_cfg', {}) or {})
    return dict(config=args.config, shape=list(args.shape), mode=test_cfg.get('mode'),
                crop_size=test_cfg.get('crop_size'), stride=test_cfg.get('stride'),
                precision=getattr(model, 'precision', None), device=str(args.device),
                threads=torch.get_num_threads(), random_weights=args.random_weights, repeats=args.repeats,
                warmup=args.warmup, params_m=sum(p.numel() for p in model.parameters()) / 1e6,
                torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count())


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
        raise SystemExit('--warmup must be at least 1 (the first image pays for lazy initialisation).')
    if args.repeats < 1:
        raise SystemExit('--repeats must be at least 1.')
    model = build_model(args)
    result = describe_setup(model, args)
    result.update(run_benchmark(model, args))
    print(format_table(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
