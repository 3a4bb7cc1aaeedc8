"""Cost of ProxyCLIP and CorrCLIP against MaskCLIP on the same input: latency split by stage, peak memory.

Usage::

    MALLOC_MMAP_THRESHOLD_=131072 python tools/analysis/vfm_cost_benchmark.py [--precision fp32 bf16]
        [--whole 448 448] [--slide 448 672] [--repeats 3] [--methods ...] [--modes whole slide] [--threads N]
        [--json OUT]

Each model is its VOC-21 config (``configs/{maskclip,proxyclip,corrclip}/*_voc21.py``) with random weights
(the same cost as trained ones) and one text template, run through ``model.predict`` (inference,
post-processing, CorrCLIP's proposals and map correction) on a natural photo (skimage's astronaut) resized
to the input size: whole image at ``--whole``, and slide windows at ``--slide`` with each config's own
window and stride (MaskCLIP 448 / 224: 2 windows on 448x672; ProxyCLIP and CorrCLIP 336 / 112: 8
windows), all windows of an image in one batch. CorrCLIP reads its proposals from an ``.npz`` label map
on disk (its published protocol: pre-computed SAM 2 masks; here SLIC superpixels written once).

Stages (exclusive wall time per image, :mod:`ovseg.utils.stage_timer`): ``clip`` (the CLIP backbone),
``vfm`` (the foundation model, DINO ViT-B/8), ``proposals`` (reading the label map), ``rest``
(everything else: affinities, mask merging with DBSCAN, similarities, upsampling, post-processing).
Peak memory is the growth of the process's peak RSS during one call (VmHWM reset before it), i.e. the
activations on top of the loaded weights; run with ``MALLOC_MMAP_THRESHOLD_=131072`` so that glibc returns
large freed blocks to the system (otherwise memory kept from an earlier call hides the growth). Models run
in interleaved rounds after one untimed round; medians are reported. Text embeddings are computed before timing.
"""
import argparse
import json
import os
import platform
import statistics
import tempfile
import time


CONFIGS = {'maskclip': 'configs/maskclip/maskclip_vit-b16_voc21.py',
           'proxyclip': 'configs/proxyclip/proxyclip_vit-b16_voc21.py',
           'corrclip': 'configs/corrclip/corrclip_vit-b16_voc21.py'}
STAGES = {'backbone': 'clip', 'vfm': 'vfm', 'proposals': 'proposals'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='ProxyCLIP / CorrCLIP cost against MaskCLIP.')
    parser.add_argument('--precision', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'])
    parser.add_argument('--whole', type=int, nargs=2, default=(448, 448), metavar=('H', 'W'))
    parser.add_argument('--slide', type=int, nargs=2, default=(448, 672), metavar=('H', 'W'))
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds. Default 3')
    parser.add_argument('--methods', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument('--modes', nargs='+', default=['whole', 'slide'], choices=['whole', 'slide'])
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--json', default=None)
    return parser.parse_args(argv)


def build(method, label_dir):
    import torch
    from ovseg.apis.inferencer import load_config, set_text_templates, strip_weight_sources
    from ovseg.registry import MODELS
    cfg = load_config(CONFIGS[method])
    strip_weight_sources(cfg.model)
    set_text_templates(cfg.model, 'single')
    if method == 'corrclip':
        cfg.model['proposals'] = dict(type='PrecomputedLabelMaps', root=label_dir)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    model.class_embeddings()
    return model


def make_input(model, shape, label_dir, name):
    """The preprocessed photo at ``shape``, its data sample and (CorrCLIP) its label map on disk."""
    import numpy as np
    import torch
    from mmseg.structures import SegDataSample
    from skimage.data import astronaut
    from PIL import Image
    image = np.asarray(Image.fromarray(astronaut()).resize((shape[1], shape[0]), Image.BICUBIC))
    tensor = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1)
    path = os.path.join(label_dir, f'{name}.png')
    sample = SegDataSample(metainfo=dict(ori_shape=tuple(shape), img_shape=tuple(shape), img_path=path))
    x = model.data_preprocessor(dict(inputs=[tensor], data_samples=[sample]), False)['inputs']
    from ovseg.models.proposals.label_maps import SuperpixelProposals, proposals_to_label_map
    labels = proposals_to_label_map(SuperpixelProposals()(image), *shape).numpy().astype(np.int32)
    np.savez_compressed(os.path.join(label_dir, f'{name}.npz'), instance_mask=labels)
    return x, sample


def measure_once(model, x, sample, mode, precision):
    """One timed ``predict``: (seconds, {stage: ms}, peak growth MiB)."""
    from ovseg.utils.process_memory import reset_peak_rss, rss_mib
    import torch
    from ovseg.utils.stage_timer import StageTimer
    model.test_cfg['mode'], model.precision = mode, precision
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
    stages = {label: split.get(name, 0.0) for name, label in STAGES.items()}
    stages['rest'] = 1000 * seconds - sum(stages.values())
    return seconds, stages, peak


def run(args):
    import torch
    label_dir = tempfile.mkdtemp(prefix='ovseg_vfm_cost_')
    models = {m: build(m, label_dir) for m in args.methods}
    inputs = {}
    for mode, shape in (('whole', args.whole), ('slide', args.slide)):
        if mode not in args.modes:
            continue
        inputs[mode] = {m: make_input(model, shape, label_dir, f'{mode}_{shape[0]}x{shape[1]}')
                        for m, model in models.items()}
    results = dict(machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   threads=torch.get_num_threads(), repeats=args.repeats, whole=list(args.whole),
                   slide=list(args.slide), rows=[])
    for precision in args.precision:
        for mode in args.modes:
            runs = {m: [] for m in models}
            for round_index in range(args.repeats + 1):
                for m, model in models.items():
                    out = measure_once(model, *inputs[mode][m], mode, precision)
                    if round_index:
                        runs[m].append(out)
            for m, rounds in runs.items():
                model = models[m]
                row = dict(method=m, precision=precision, mode=mode,
                           windows=_windows(model, args.whole if mode == 'whole' else args.slide, mode),
                           latency_ms=1000 * statistics.median(r[0] for r in rounds),
                           stages_ms={k: statistics.median(r[1][k] for r in rounds) for k in rounds[0][1]},
                           peak_mib=statistics.median(r[2] for r in rounds))
                results['rows'].append(row)
    for model in models.values():
        model.precision, model.test_cfg['mode'] = 'fp32', 'slide'
    return results


def _windows(model, shape, mode):
    if mode == 'whole':
        return 1
    from ovseg.models.utils.sliding_window import window_boxes
    crop, stride = model.test_cfg['crop_size'], model.test_cfg['stride']
    return len(window_boxes(shape[0], shape[1], (crop, crop), (stride, stride)))


def format_report(r):
    lines = ['| precision | input | method | windows | latency | vs MaskCLIP | CLIP | foundation model | proposals '
             '| rest | peak memory (growth) |', '|' + '---|' * 11]
    base = {(row['precision'], row['mode']): row['latency_ms'] for row in r['rows'] if row['method'] == 'maskclip'}
    for row in r['rows']:
        shape = r['whole'] if row['mode'] == 'whole' else r['slide']
        ref = base.get((row['precision'], row['mode']))
        ratio = f"{row['latency_ms'] / ref:.2f}x" if ref else '-'
        s = row['stages_ms']
        lines.append(f"| {row['precision']} | {row['mode']} {shape[0]}x{shape[1]} | {row['method']} | {row['windows']} "
                     f"| {row['latency_ms']:.0f} ms | {ratio} | {s['clip']:.0f} ms | {s['vfm']:.0f} ms "
                     f"| {s['proposals']:.0f} ms | {s['rest']:.0f} ms | {row['peak_mib']:.0f} MiB |")
    lines.append(f"\nMedians of {r['repeats']} interleaved rounds; {r['threads']} threads on {r['machine']}, "
                 f"torch {r['torch']}.")
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
