"""Cost of Trident at its published sizes: latency split by stage and peak memory, fp32 and bf16.

Usage::

    MALLOC_MMAP_THRESHOLD_=131072 python tools/analysis/trident_cost_benchmark.py [--config CONFIG]
        [--image H W] [--precision fp32 bf16] [--repeats 1] [--threads N] [--json OUT]

The model is a Trident config (default ``configs/trident/trident_vit-b16_voc21.py``: CLIP ViT-B/16, DINO
ViT-B/16, SAM ViT-B at 1024) with random weights (the same cost as trained ones) and one text template,
run through ``model.predict`` on a natural photo (skimage's astronaut, resized to ``--image``, default
375 x 500, a typical PASCAL VOC image) passed through the config's own test resize (short side 672:
896 x 672, 12 windows of 336 at stride 224); SAM encodes the photo at its own size, rounded up to 16
(1024 x 768 inside SAM's 1024 square), once for the aggregation and the refinement.

Stages (exclusive wall time per image, :mod:`ovseg.utils.stage_timer`): ``CLIP`` (the backbone on the
windows), ``DINO`` (the foundation model on the windows), ``splice`` (proxy attention and splicing),
``SAM encoder`` (the encoder pass, last block included), ``aggregation`` (the weights accumulated from the
last block's attention, and their product with the spliced map), ``classify`` (CLIP head, cosines,
resize, probabilities), ``refinement`` (regions, prompts, SAM's decoder, merge; and SAM's encoder when the
refinement embeds its own image, as on Cityscapes), ``rest``. With random weights the class
probabilities are flat, so no region passes the coarse threshold and the refinement has nothing to
prompt; the refinement is therefore also timed on its own (``--regions``) with a confident synthetic coarse
map (softmax of 40 x smooth random fields, the ``sam_refine`` fixture's recipe) on the same image and the
same SAM embedding: regions found, prompts, SAM's decoder, merge. Peak memory is the growth of the process's
peak RSS during one call (VmHWM reset before it); run with ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc
returns large freed blocks to the system. One untimed round first; medians of the timed rounds.
"""
import argparse
import json
import platform
import statistics
import time


DEFAULT_CONFIG = 'configs/trident/trident_vit-b16_voc21.py'
STAGES = {'CLIP': ('backbone',), 'DINO': ('vfm',), 'splice': ('splice',), 'SAM encoder': ('sam_encoder',),
          'aggregation': ('sam_weights', 'aggregator'), 'classify': ('classify', 'text_classifier'),
          'refinement': ('refinement', 'sam_refiner.prompt_regions', 'sam_refiner.sam.model.image_encoder')}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Trident cost by stage.')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--image', type=int, nargs=2, default=(375, 500), metavar=('H', 'W'))
    parser.add_argument('--precision', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'])
    parser.add_argument('--repeats', type=int, default=1, help='timed rounds after one untimed. Default 1')
    parser.add_argument('--regions', action='store_true', help='also time the refinement on a confident map')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--json', default=None)
    return parser.parse_args(argv)


def build(config):
    import torch
    from ovseg.apis.inferencer import load_config, set_text_templates, strip_weight_sources
    from ovseg.registry import MODELS
    cfg = load_config(config)
    strip_weight_sources(cfg.model)
    set_text_templates(cfg.model, 'single')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.class_embeddings()
    return model, cfg


def make_input(model, cfg, shape):
    """The photo at ``shape`` through the config's test resize and the model's preprocessor, and its sample
    (``ori_img``: the refinement and SAM read the photo at its own size)."""
    import numpy as np
    import torch
    from mmseg.structures import SegDataSample
    from PIL import Image
    from skimage.data import astronaut
    from mmcv.transforms import Compose
    from ovseg.registry import TRANSFORMS
    image = np.asarray(Image.fromarray(astronaut()).resize((shape[1], shape[0]), Image.BICUBIC))
    resize = Compose([TRANSFORMS.build(t) for t in cfg.test_pipeline if t['type'] == 'Resize'])
    out = resize(dict(img=np.ascontiguousarray(image[..., ::-1]), img_shape=image.shape[:2],
                      ori_shape=image.shape[:2]))
    tensor = torch.from_numpy(np.ascontiguousarray(out['img'])).permute(2, 0, 1)
    sample = SegDataSample(metainfo=dict(ori_shape=tuple(shape), img_shape=tuple(out['img'].shape[:2]),
                                         ori_img=image))
    x = model.data_preprocessor(dict(inputs=[tensor], data_samples=[sample]), False)['inputs']
    return x, sample


def measure_once(model, x, sample, precision):
    """One timed ``predict``: (seconds, {stage: ms}, peak growth MiB)."""
    from ovseg.utils.process_memory import reset_peak_rss, rss_mib
    import torch
    from ovseg.utils.stage_timer import StageTimer
    model.precision = precision
    timer = StageTimer(model, 'cpu')
    base = rss_mib('VmRSS')
    reset = reset_peak_rss()
    start = time.perf_counter()
    with torch.no_grad():
        model.predict(x, [sample.clone()])
    seconds = time.perf_counter() - start
    peak = (rss_mib('VmHWM') - base) if reset else float('nan')
    timer.remove()
    split = timer.split_ms(seconds, 1)
    stages = {label: sum(split.get(name, 0.0) for name in names) for label, names in STAGES.items()}
    stages['rest'] = 1000 * seconds - sum(stages.values())
    return seconds, stages, peak


def synthetic_probs(num_classes, shape, seed=0, sigma=14.0, scale=40.0):
    """(C, H, W) confident class probabilities: softmax of ``scale`` x smooth random fields."""
    import numpy as np
    import torch
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    fields = np.stack([gaussian_filter(rng.standard_normal(shape), sigma) for _ in range(num_classes)])
    fields /= np.abs(fields).max()
    return torch.from_numpy(scale * fields).float().softmax(dim=0)


def measure_refinement(model, sample, precision):
    """The refinement alone on a confident synthetic map: (ms, regions)."""
    import torch
    model.precision = precision
    original = sample.metainfo['ori_img']
    with torch.no_grad():
        sam_image, _ = model.sam_stage(model.sam_refiner.sam_input(original))
        probs = synthetic_probs(model.class_embeddings().num_classes, original.shape[:2])
        pred = probs.argmax(dim=0, keepdim=True)
        start = time.perf_counter()
        result, _ = model.refine_prediction(original, probs, pred, sam_image)
    return 1000 * (time.perf_counter() - start), len(result.regions)


def run(args):
    import torch
    model, cfg = build(args.config)
    x, sample = make_input(model, cfg, tuple(args.image))
    windows = len(model.splicer.windows(model.splicer.resize(x))[1])
    results = dict(config=args.config, machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   threads=torch.get_num_threads(), repeats=args.repeats, image=list(args.image),
                   clip_input=list(model.splicer.input_size(*x.shape[-2:])), windows=windows, rows=[])
    for precision in args.precision:
        rounds = [measure_once(model, x, sample, precision) for _ in range(args.repeats + 1)][1:]
        results['rows'].append(dict(
            precision=precision, latency_ms=1000 * statistics.median(r[0] for r in rounds),
            stages_ms={k: statistics.median(r[1][k] for r in rounds) for k in rounds[0][1]},
            peak_mib=statistics.median(r[2] for r in rounds)))
        if args.regions:
            refine = [measure_refinement(model, sample, precision) for _ in range(args.repeats + 1)][1:]
            results['rows'][-1].update(refine_ms=statistics.median(r[0] for r in refine), regions=refine[0][1])
    return results


def format_report(r):
    names = list(STAGES) + ['rest']
    lines = ['| precision | latency | ' + ' | '.join(names) + ' | peak memory (growth) |',
             '|' + '---|' * (len(names) + 3)]
    for row in r['rows']:
        total = row['latency_ms']
        cells = [f"{row['stages_ms'][n]:.0f} ms ({100 * row['stages_ms'][n] / total:.0f} %)" for n in names]
        lines.append(f"| {row['precision']} | {total:.0f} ms | " + ' | '.join(cells)
                     + f" | {row['peak_mib']:.0f} MiB |")
    for row in r['rows']:
        if 'refine_ms' in row:
            lines.append(f"\n{row['precision']}: refinement of a confident map with {row['regions']} regions "
                         f"(one SAM decoder batch per class): {row['refine_ms']:.0f} ms")
    lines.append(f"\n{r['config']}: photo {r['image'][0]}x{r['image'][1]}, CLIP input {r['clip_input'][0]}x"
                 f"{r['clip_input'][1]}, {r['windows']} windows; median of {r['repeats']} timed round(s) after one "
                 f"untimed; {r['threads']} threads on {r['machine']}, torch {r['torch']}.")
    return '\n'.join(lines)


def main(argv=None):
    import torch
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
