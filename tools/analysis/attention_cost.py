"""Latency of the training-free attention variants relative to MaskCLIP, on the same input and windows.

Usage::

    python tools/analysis/attention_cost.py [--dataset ade150] [--precision fp32 bf16] [--whole 448 448]
        [--slide 448 672] [--crop 448] [--stride 224] [--repeats 7] [--threads N] [--device cpu|cuda]
        [--json OUT]

Builds the ``maskclip``, ``sclip``, ``clearclip`` and ``naclip`` configs of one benchmark with random
weights (same cost as trained ones) and one text template (text embeddings are computed before timing),
and times ``model.inference`` (backbone with the method's last block, cosine similarity, window
stitching, upsampling to the input) on the whole-image input and in slide mode on the slide input. Every
model uses the same windows (``--crop`` / ``--stride``, MaskCLIP's 448 / 224 by default), so the rows
differ only in the attention strategy and the head; a 448x672 input gives 3 windows, run as one batch.
``naclip + pamr`` adds NACLIP's PAMR (10 iterations, dilations 8 and 16) on the logits at input size, the
post-processing the original runs after stitching.

The measurements are interleaved (one of each per round, ``--repeats`` rounds after one warm-up round) so
that load from other processes hits all alike; the report gives the median wall time and the median CPU
time of the process (summed over threads, less sensitive to other processes on a shared machine), and
both relative to MaskCLIP.
"""
import argparse
import json
import platform
import statistics
import time

import torch

from ovseg.apis.inferencer import load_config, set_text_templates, strip_weight_sources
from ovseg.registry import MODELS

METHODS = ('maskclip', 'sclip', 'clearclip', 'naclip')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Attention variants vs MaskCLIP (see the module docstring).')
    parser.add_argument('--dataset', default='ade150', help='benchmark of the configs. Default ade150')
    parser.add_argument('--precision', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--whole', type=int, nargs=2, default=(448, 448), metavar=('H', 'W'))
    parser.add_argument('--slide', type=int, nargs=2, default=(448, 672), metavar=('H', 'W'))
    parser.add_argument('--crop', type=int, default=448)
    parser.add_argument('--stride', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=7, help='timed rounds. Default 7')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int)
    parser.add_argument('--json')
    return parser.parse_args(argv)


def build(method, dataset, device):
    """A config's segmentor with random weights and one text template, eval, text embedded."""
    cfg = load_config(f'configs/{method}/{method}_vit-b16_{dataset}.py')
    strip_weight_sources(cfg.model)
    set_text_templates(cfg.model, 'single')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).eval()
    model.class_embeddings()
    return model


def _task(model, mode, crop, stride, precision, with_post=False):
    def run(x):
        model.test_cfg.update(mode=mode, crop_size=crop, stride=stride)
        model.precision = precision
        out = model.inference(x)
        if with_post:
            out = model.refine(out, x)
        return out
    return run


def measure(tasks, repeats, device):
    """Interleaved timing: {name: ([wall s], [cpu s])} after one untimed round."""
    times = {name: ([], []) for name in tasks}
    for round_index in range(repeats + 1):
        for name, (fn, x) in tasks.items():
            if device.type == 'cuda':
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter(), time.process_time()
            with torch.no_grad():
                fn(x)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            if round_index:
                times[name][0].append(time.perf_counter() - wall)
                times[name][1].append(time.process_time() - cpu)
    return times


def run(args):
    device = torch.device(args.device)
    models = {m: build(m, args.dataset, device) for m in METHODS}
    gen = torch.Generator().manual_seed(0)
    inputs = dict(whole=torch.randn(1, 3, *args.whole, generator=gen).to(device),
                  slide=torch.randn(1, 3, *args.slide, generator=gen).to(device))
    results = dict(machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   threads=torch.get_num_threads(), device=str(device), repeats=args.repeats,
                   dataset=args.dataset, whole=list(args.whole), slide=list(args.slide), crop=args.crop,
                   stride=args.stride, precisions={})
    for precision in args.precision:
        tasks = {}
        for mode in ('whole', 'slide'):
            for method, model in models.items():
                tasks[f'{method} {mode}'] = (_task(model, mode, args.crop, args.stride, precision), inputs[mode])
            tasks[f'naclip + pamr {mode}'] = (_task(models['naclip'], mode, args.crop, args.stride, precision,
                                                    with_post=True), inputs[mode])
        times = measure(tasks, args.repeats, device)
        wall = {name: statistics.median(t[0]) for name, t in times.items()}
        cpu = {name: statistics.median(t[1]) for name, t in times.items()}
        relative = {name: dict(wall=wall[name] / wall[f'maskclip {name.rsplit(" ", 1)[1]}'] - 1,
                               cpu=cpu[name] / cpu[f'maskclip {name.rsplit(" ", 1)[1]}'] - 1) for name in wall}
        results['precisions'][precision] = dict(median_wall_s=wall, median_cpu_s=cpu, vs_maskclip=relative)
    for model in models.values():
        model.precision = 'fp32'
    return results


def format_report(r):
    lines = ['| precision | variant | whole wall ms | whole vs MaskCLIP (wall / CPU) | slide wall ms | '
             'slide vs MaskCLIP (wall / CPU) |', '|---|---|---|---|---|---|']
    for precision, p in r['precisions'].items():
        for variant in METHODS + ('naclip + pamr',):
            cells = []
            for mode in ('whole', 'slide'):
                name = f'{variant} {mode}'
                rel = p['vs_maskclip'][name]
                cells += [f"{1000 * p['median_wall_s'][name]:.0f}",
                          f"{100 * rel['wall']:+.1f}% / {100 * rel['cpu']:+.1f}%" if variant != 'maskclip' else '-']
            lines.append(f'| {precision} | {variant} | ' + ' | '.join(cells) + ' |')
    lines.append(f"\nMedians of {r['repeats']} interleaved rounds; {r['dataset']} configs, one template; whole "
                 f"{r['whole'][0]}x{r['whole'][1]}, slide {r['slide'][0]}x{r['slide'][1]} (windows {r['crop']} / "
                 f"{r['stride']} for every model); {r['threads']} threads on {r['device']} ({r['machine']}), "
                 f"torch {r['torch']}.")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    print(format_report(results))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
