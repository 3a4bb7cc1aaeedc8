"""What MaskCLIP adds to the ViT's own forward, and what CLIP-DINOiser adds to MaskCLIP.

Usage::

    python tools/analysis/overhead_benchmark.py [--maskclip CONFIG] [--dinoiser CONFIG]
        [--precision fp32 bf16] [--whole 448 448] [--slide 448 672] [--repeats 7] [--compile] [--threads N]
        [--json OUT]

Timed, each on the same random input and with random weights (same cost as trained ones):

- ``vit``: the CLIP ViT's own forward (patch embedding, every block with its q-k attention,
  ``ln_post`` and the projection, for all tokens), on the whole-image input;
- ``maskclip whole`` / ``clip_dinoiser whole``: ``model.inference`` of the configs in whole-image
  mode on that input (backbone with the MaskCLIP value path, refinement, similarity head, softmax,
  background rule, upsampling to the input size);
- ``maskclip slide`` / ``clip_dinoiser slide``: the same in slide mode (the configs' window and
  stride, 448 / 224: a 448x672 input gives 3 windows, run as one batch);
- with ``--compile``, ``maskclip whole compiled``: MaskCLIP whole with ``compile=True`` (the backbone
  through ``torch.compile``; compilation happens in the untimed first round).

The measurements are interleaved (one of each per round, ``--repeats`` rounds after one warm-up
round), so that load from other processes hits all of them alike; the medians are compared. Text
embeddings are computed before timing (they are cached per vocabulary).
"""
import argparse
import json
import platform
import statistics
import time

import torch  # light: ovseg is imported where used (fast --help)

MASKCLIP = 'configs/maskclip/maskclip_vit-b16_ade150.py'
DINOISER = 'configs/clip_dinoiser/clip_dinoiser_vit-b16_ade150.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='MaskCLIP and CLIP-DINOiser overheads.')
    parser.add_argument('--maskclip', default=MASKCLIP)
    parser.add_argument('--dinoiser', default=DINOISER)
    parser.add_argument('--precision', nargs='+', default=['fp32', 'bf16'],
                        choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--whole', type=int, nargs=2, default=(448, 448), metavar=('H', 'W'))
    parser.add_argument('--slide', type=int, nargs=2, default=(448, 672), metavar=('H', 'W'))
    parser.add_argument('--repeats', type=int, default=7, help='timed rounds. Default 7')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int)
    parser.add_argument('--compile', action='store_true',
                        help="also time MaskCLIP with torch.compile'd backbone ('maskclip whole compiled')")
    parser.add_argument('--json')
    return parser.parse_args(argv)


def build(config, device, compile=False):
    """A config's segmentor with random weights and one text template, eval, on ``device``."""
    from ovseg.apis.model_loading import load_config, set_text_templates, strip_weight_sources
    from ovseg.registry import MODELS
    cfg = load_config(config)
    strip_weight_sources(cfg.model)
    if compile:
        cfg.model['compile'] = True
    set_text_templates(cfg.model, 'single')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(device).eval()
    model.class_embeddings()  # text embeddings once, before timing
    return model


def _inference(model, mode, precision):
    def run(x):
        model.test_cfg['mode'] = mode
        model.precision = precision
        return model.inference(x)
    return run


def _vit(model, precision):
    """The ViT's own forward for all tokens (embedding, blocks, ln_post, projection) under the segmentor's
    autocast rule, as in its own backbone call."""
    from ovseg.models.backbones.vit_dense import vit_all_tokens

    def run(x):
        model.precision = precision
        with model._autocast(x.device):
            return vit_all_tokens(model.backbone.clip.visual, x)
    return run


def measure(tasks, repeats, device):
    """Interleaved timing: {name: [seconds per round]} after one untimed round."""
    times = {name: [] for name in tasks}
    for round_index in range(repeats + 1):
        for name, (fn, x) in tasks.items():
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                fn(x)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            if round_index:
                times[name].append(time.perf_counter() - start)
    return times


def run(args):
    device = torch.device(args.device)
    maskclip, dinoiser = build(args.maskclip, device), build(args.dinoiser, device)
    compiled = build(args.maskclip, device, compile=True) if args.compile else None
    gen = torch.Generator().manual_seed(0)
    whole = torch.randn(1, 3, *args.whole, generator=gen).to(device)
    slide = torch.randn(1, 3, *args.slide, generator=gen).to(device)
    results = dict(machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   threads=torch.get_num_threads(), device=str(device), repeats=args.repeats,
                   whole=list(args.whole), slide=list(args.slide), precisions={})
    for precision in args.precision:
        tasks = {
            'vit': (_vit(maskclip, precision), whole),
            'maskclip whole': (_inference(maskclip, 'whole', precision), whole),
            'clip_dinoiser whole': (_inference(dinoiser, 'whole', precision), whole),
            'maskclip slide': (_inference(maskclip, 'slide', precision), slide),
            'clip_dinoiser slide': (_inference(dinoiser, 'slide', precision), slide),
        }
        if compiled is not None:
            compiled.load_state_dict(maskclip.state_dict())
            tasks['maskclip whole compiled'] = (_inference(compiled, 'whole', precision), whole)
        times = measure(tasks, args.repeats, device)
        med = {name: statistics.median(t) for name, t in times.items()}
        results['precisions'][precision] = dict(
            median_s=med, min_s={name: min(t) for name, t in times.items()},
            maskclip_vs_vit=med['maskclip whole'] / med['vit'] - 1,
            dinoiser_vs_maskclip_whole=med['clip_dinoiser whole'] / med['maskclip whole'] - 1,
            dinoiser_vs_maskclip_slide=med['clip_dinoiser slide'] / med['maskclip slide'] - 1)
    for model in (maskclip, dinoiser, compiled):
        if model is not None:
            model.precision = 'fp32'
    if 'fp32' in results['precisions'] and 'bf16' in results['precisions']:
        fp32, bf16 = (results['precisions'][p]['median_s'] for p in ('fp32', 'bf16'))
        results['bf16_speedup'] = {name: fp32[name] / bf16[name] for name in fp32}
    return results


def format_report(r):
    lines = ['| precision | ' + ' | '.join(next(iter(r['precisions'].values()))['median_s']) +
             ' | MaskCLIP vs ViT | DINOiser vs MaskCLIP (whole / slide) |']
    lines.append('|' + '---|' * (len(lines[0].split('|')) - 2))
    for precision, p in r['precisions'].items():
        cells = [f'{1000 * s:.0f} ms' for s in p['median_s'].values()]
        lines.append(f"| {precision} | " + ' | '.join(cells) +
                     f" | {100 * p['maskclip_vs_vit']:+.1f}% | "
                     f"{100 * p['dinoiser_vs_maskclip_whole']:+.1f}% / "
                     f"{100 * p['dinoiser_vs_maskclip_slide']:+.1f}% |")
    if 'bf16_speedup' in r:
        lines.append('\nbf16 speed-up: ' + ', '.join(f'{name} {v:.2f}x'
                                                    for name, v in r['bf16_speedup'].items()))
    lines.append(f"\nMedians of {r['repeats']} interleaved rounds; whole {r['whole'][0]}x"
                 f"{r['whole'][1]}, slide {r['slide'][0]}x{r['slide'][1]}; {r['threads']} threads "
                 f"on {r['device']} ({r['machine']}), torch {r['torch']}.")
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
