"""Speed and memory of the anomaly heads (WinCLIP per image, MuSc per category batch, few-shot memories).

Usage::

    python tools/analysis/anomaly_benchmark.py winclip [--arch tiny|ViT-B-16-plus-240] [--size 240]
        [--batch 8] [--repeats 3] [--device cpu|cuda]
    python tools/analysis/anomaly_benchmark.py musc [--arch tiny|ViT-L-14-336] [--size 518]
        [--layers 5 11 17 23] [--num-images 25 50 100 200] [--device cpu|cuda]
    python tools/analysis/anomaly_benchmark.py musc-scoring [--grid 16] [--channels 256] [--layers 4]
        [--num-images 25 50 100 200]
    python tools/analysis/anomaly_benchmark.py winclip-fewshot|adaptclip-fewshot [--num-images 1 10 50 200]

Models have random weights (nothing is downloaded; ``--arch tiny`` is the 2-block test ViT). Inputs are
random images (or, for ``musc-scoring``, random patch tokens: the scoring alone). Each MuSc size runs
in a fresh subprocess so its peak memory is its own: CUDA ``max_memory_allocated`` or the peak RSS of
the timed call (VmHWM after resetting it) minus the RSS before it; for ``musc`` the images and the
model exist before the call, for ``musc-scoring`` the tokens are made inside it. The MuSc rows also give the bound
of ``ovseg.models.anomaly.memory_bound_bytes`` for comparison.

The few-shot modes take a memory of k = ``--num-images`` normal references at the published shapes
(WinCLIP+: ViT-B-16-plus-240 at 240 px, 15 x 15 patches of 896-d tokens and 196 + 169 windows of 640-d
embeddings per image; AdaptCLIP: ViT-L/14 at 518 px, 4 taps of 1370 x 768 tokens per image; random
values) and time the head's scoring of one query against it (bank search, maps, for AdaptCLIP the
prompt-query adapter with random weights), each k in a fresh subprocess. ``bank_mib`` is the memory's size
(its tensors, exact); ``peak_mib`` the growth of the peak RSS during the scoring, compared with the head's
``memory_bytes`` scoring estimate (``bound_mib``); the subprocesses run with glibc's mmap threshold fixed at
1 MiB (``MALLOC_MMAP_THRESHOLD_``), so that freed tensors leave the resident set at once instead of
lingering in the heap. One JSON object per line on stdout.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

# ovseg is imported by the functions that use it: --help answers without the model stack.


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark WinCLIP / MuSc.')
    parser.add_argument('method', choices=['winclip', 'musc', 'musc-scoring', 'winclip-fewshot',
                                           'adaptclip-fewshot'])
    parser.add_argument('--arch', default='tiny', help="'tiny' or an open_clip model name (random weights)")
    parser.add_argument('--size', type=int, default=64, help='input side in pixels. Default 64')
    parser.add_argument('--batch', type=int, default=8, help='WinCLIP images per batch. Default 8')
    parser.add_argument('--repeats', type=int, default=3, help='WinCLIP timed batches. Default 3')
    parser.add_argument('--layers', type=int, nargs='+', default=None,
                        help='MuSc blocks (musc) or number of layers (musc-scoring, one value)')
    parser.add_argument('--grid', type=int, default=16, help='musc-scoring patch grid side. Default 16')
    parser.add_argument('--channels', type=int, default=256, help='musc-scoring token width. Default 256')
    parser.add_argument('--num-images', type=int, nargs='+', default=[25, 50, 100, 200])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--one', action='store_true', help=argparse.SUPPRESS)  # child process: one size
    return parser.parse_args(argv)


def _backbone(args):
    from ovseg.registry import MODELS
    from ovseg.testing import tiny_clip_arch
    cfg = dict(type='OpenCLIPBackbone')
    cfg.update(arch=tiny_clip_arch('vit')) if args.arch == 'tiny' else cfg.update(model_name=args.arch)
    return MODELS.build(cfg).to(args.device).eval()


def _measure(fn, device):
    """Run ``fn`` once; return (seconds, peak MiB added by the call)."""
    from ovseg.utils.process_memory import reset_peak_rss, rss_mib
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        before = rss_mib('VmRSS')
    start = time.perf_counter()
    fn()
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        return time.perf_counter() - start, (torch.cuda.max_memory_allocated() - before) / 2**20
    return time.perf_counter() - start, rss_mib('VmHWM') - before


def bench_winclip(args):
    from ovseg.models.decode_heads import WinCLIPHead
    backbone, head = _backbone(args), WinCLIPHead()
    head.text_embeddings(backbone, ['object'])  # cached prompt ensemble, not timed
    images = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    head(backbone, images[:1], ['object'])  # warm-up
    times, peaks = zip(*(_measure(lambda: head(backbone, images, ['object'] * args.batch), args.device)
                         for _ in range(args.repeats)))
    return dict(method='winclip', arch=args.arch, size=args.size, batch=args.batch, device=args.device,
                images_per_s=args.batch * len(times) / sum(times), peak_mib=max(peaks))


def _warm_up(args):
    """Load the kernels once on 5 small images so their code pages do not count as data memory."""
    from ovseg.models.anomaly import musc_scores
    tokens = [torch.randn(5, 17, 8, device=args.device)]
    musc_scores(tokens, torch.nn.functional.normalize(torch.randn(5, 4, device=args.device), dim=-1), 16)


def bench_musc_one(args, n):
    from ovseg.models.anomaly import memory_bound_bytes, musc_scores
    from ovseg.models.decode_heads import MuScHead
    _warm_up(args)
    if args.method == 'musc-scoring':  # the category's tokens are created inside the measured call
        layers = (args.layers or [4])[0]

        def run():
            gen = torch.Generator(device=args.device).manual_seed(0)
            tokens = [torch.randn(n, args.grid ** 2 + 1, args.channels, device=args.device, generator=gen)
                      for _ in range(layers)]
            cls = torch.nn.functional.normalize(torch.randn(n, 64, device=args.device, generator=gen), dim=-1)
            return musc_scores(tokens, cls, args.size)
        seconds, peak = _measure(run, args.device)
        length, channels = args.grid ** 2, args.channels
    else:  # the model and the images exist before the measured call
        backbone = _backbone(args)
        blocks = tuple(args.layers or (0, 1))
        head, layers = MuScHead(layers=blocks), len(blocks)
        images = torch.randn(n, 3, args.size, args.size, device=args.device)
        seconds, peak = _measure(lambda: head(backbone, images), args.device)
        visual = backbone.clip.visual
        length, channels = (args.size // visual.patch_size[0]) ** 2, visual.conv1.out_channels
    bound = memory_bound_bytes(n, length, channels, layers, (args.size, args.size)) / 2**20
    return dict(method=args.method, arch=args.arch, size=args.size, num_images=n, patches=length,
                channels=channels, layers=layers, device=args.device, seconds=seconds,
                images_per_s=n / seconds, peak_mib=peak, bound_mib=bound)


def _winclip_fewshot_inputs(k, gen, device):
    from ovseg.models.anomaly import window_masks
    from ovseg.models.decode_heads import WinCLIPFewShotHead
    head, grid, width, dim = WinCLIPFewShotHead(), (15, 15), 896, 640
    windows = {s: window_masks(grid, s) for s in head.scales}
    memory = dict(patch=torch.randn(k * 225, width, generator=gen, device=device), grid=grid, num_references=k,
                  windows={s: torch.randn(k * m.shape[1], dim, generator=gen, device=device)
                           for s, m in windows.items()})
    encoded = dict(image_embeddings=torch.randn(1, dim, generator=gen, device=device), masks=windows, grid=grid,
                   patch_embeddings=torch.randn(1, 225, width, generator=gen, device=device),
                   input_size=(240, 240),
                   window_embeddings={s: torch.randn(1, m.shape[1], dim, generator=gen, device=device)
                                      for s, m in windows.items()})
    text = torch.randn(2, dim, generator=gen, device=device)
    return (lambda: head.score(encoded, text, memory)), head.memory_bytes(k, grid, width, dim)


def _adaptclip_fewshot_inputs(k, gen, device):
    from ovseg.models.decode_heads import AdaptCLIPHead
    head = AdaptCLIPHead(text_width=768, embed_dim=768).to(device).eval()
    grid, size, dim = (37, 37), (518, 518), 768
    banks = [head.bank(torch.randn(k, 1370, dim, generator=gen, device=device)) for _ in head.features]
    memory = dict(banks=banks, grid=grid, num_references=k)
    encoded = dict(tokens=[torch.randn(1, 1370, dim, generator=gen, device=device) for _ in head.features],
                   image_features=torch.randn(1, dim, generator=gen, device=device), grid=grid)
    texts = [torch.randn(2, dim, generator=gen, device=device) for _ in range(2)]
    return (lambda: head.score(encoded, *texts, size, memory)), head.memory_bytes(k, grid, dim, size)


def bench_fewshot_one(args, k):
    """Score one query against a memory of ``k`` references (both made before the measured call)."""
    build = _winclip_fewshot_inputs if args.method == 'winclip-fewshot' else _adaptclip_fewshot_inputs
    with torch.no_grad():
        build(1, torch.Generator(device=args.device).manual_seed(0), args.device)[0]()  # load the kernels
        score, (bank, bound) = build(k, torch.Generator(device=args.device).manual_seed(0), args.device)
        seconds, peak = _measure(score, args.device)
    return dict(method=args.method, num_references=k, device=args.device, seconds=seconds,
                bank_mib=bank / 2**20, peak_mib=peak, bound_mib=bound / 2**20)


def main(argv=None):
    args = parse_args(argv)
    if args.method == 'winclip':
        print(json.dumps(bench_winclip(args)))
        return
    if args.one:
        one = bench_fewshot_one if args.method.endswith('fewshot') else bench_musc_one
        print(json.dumps(one(args, args.num_images[0])))
        return
    argv = _without_num_images(list(argv if argv is not None else sys.argv[1:]))
    for n in args.num_images:
        cmd = [sys.executable, os.path.abspath(__file__)] + argv + ['--num-images', str(n), '--one']
        env = dict(os.environ)
        if args.method.endswith('fewshot'):  # a fixed mmap threshold: the peak RSS follows the live tensors
            env.update(MALLOC_MMAP_THRESHOLD_='1048576', MALLOC_ARENA_MAX='2')
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode:
            raise RuntimeError(f'benchmark of {n} images failed:\n{proc.stderr[-2000:]}')
        print(proc.stdout.strip().splitlines()[-1], flush=True)


def _without_num_images(argv):
    out, skip = [], False
    for a in argv:
        if a == '--num-images':
            skip = True
            continue
        if skip and not a.startswith('--'):
            continue
        skip = False
        out.append(a)
    return out


if __name__ == '__main__':
    main()
