"""Speed, peak memory and output identity of ovseg's SAM proposals against SamAutomaticMaskGenerator.

Usage::

    PYTHONPATH=. python tools/analysis/sam_proposals_benchmark.py [--arch vit_b] [--checkpoint FILE]
        [--image FILE] [--size 1024] [--points-per-side 32] [--points-per-batch 64]
        [--pred-iou-thresh 0.88] [--stability-score-thresh 0.95] [--box-nms-thresh 0.7]
        [--sam-input-size 1024] [--threads N] [--seed 0] [--repeats 1] [--json OUT]
        [--generators stock,ovseg[,sam2]] [--sam2-arch hiera_b+ | --sam2-pretrained ID_OR_FOLDER]

The generators run on the same image (``--image``, default scikit-image's astronaut, resized so that its
long side is ``--size``) with the same settings, each in its own process so that peak memories do not mix:
``stock`` (segment-anything's generator) and ``ovseg`` (``SAMAutomaticProposals``) on the same SAM weights
(``--checkpoint``, default random weights drawn with ``--seed``), and optionally ``sam2``:
``SAMAutomaticProposals`` on a SAM 2 backend (random weights of ``--sam2-arch``, or ``--sam2-pretrained``).
Reported per generator: wall and CPU seconds for the image (embedding included; the fastest of
``--repeats`` runs made in ABBA order, so that load drifts on a shared machine hit all alike), seconds of
the image encoder alone, peak resident memory of the process and its increase during the proposal stage
(Linux: the peak is reset after the model is built). The masks, predicted IoUs, stability scores and
boxes of ``stock`` and ``ovseg`` (one network) are compared.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark SAM automatic mask proposals.')
    parser.add_argument('--arch', default='vit_b', help="SAM arch: vit_b (default), vit_l, vit_h, tiny")
    parser.add_argument('--checkpoint', help='SAM weights (default: random weights from --seed)')
    parser.add_argument('--sam-input-size', type=int, default=1024,
                        help="SAM's encoder input side (1024 for released weights). Default 1024")
    parser.add_argument('--image', help='image file (default: skimage astronaut)')
    parser.add_argument('--size', type=int, default=1024, help='long side of the test image. Default 1024')
    parser.add_argument('--points-per-side', type=int, default=32)
    parser.add_argument('--points-per-batch', type=int, default=64)
    parser.add_argument('--pred-iou-thresh', type=float, default=0.88)
    parser.add_argument('--stability-score-thresh', type=float, default=0.95)
    parser.add_argument('--box-nms-thresh', type=float, default=0.7)
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    parser.add_argument('--seed', type=int, default=0, help='random SAM weights seed. Default 0')
    parser.add_argument('--repeats', type=int, default=1,
                        help='runs per generator, in ABBA order; the fastest is reported. Default 1')
    parser.add_argument('--json', help='write the results to this JSON file')
    parser.add_argument('--generators', default='stock,ovseg',
                        help="comma-separated: stock, ovseg, sam2. Default 'stock,ovseg'")
    parser.add_argument('--sam2-arch', default='hiera_b+',
                        help="SAM 2 size for random weights: hiera_t, hiera_s, hiera_b+ (default), hiera_l")
    parser.add_argument('--sam2-pretrained',
                        help='SAM 2 Hugging Face id or folder (instead of random weights)')
    parser.add_argument('--run-one', choices=['stock', 'ovseg', 'sam2'], help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load_test_image(path, size):
    """(H, W, 3) uint8 RGB with long side ``size`` (PIL bicubic)."""
    from PIL import Image
    if path:
        img = Image.open(path).convert('RGB')
    else:
        import skimage.data
        img = Image.fromarray(skimage.data.astronaut())
    scale = size / max(img.size)
    return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC))


def build_sam(args):
    torch.manual_seed(args.seed)
    if args.run_one == 'sam2':
        from ovseg.models.proposals import SAM2Predictor
        if args.sam2_pretrained:
            return SAM2Predictor(pretrained=args.sam2_pretrained).eval()
        return SAM2Predictor(arch=args.sam2_arch, image_size=args.sam_input_size).eval()
    from ovseg.models.proposals import SAMPredictor
    return SAMPredictor(arch=args.arch, checkpoint=args.checkpoint, image_size=args.sam_input_size).eval()


def run_one(args):
    """Child process: one generator on the image; masks and figures written to ``args.out``."""
    from ovseg.utils.process_memory import reset_peak_rss, rss_mib
    if args.threads:
        torch.set_num_threads(args.threads)
    image = load_test_image(args.image, args.size)
    sam = build_sam(args)
    settings = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                    pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_score_thresh,
                    box_nms_thresh=args.box_nms_thresh)
    if args.run_one == 'stock':
        from segment_anything import SamAutomaticMaskGenerator
        generator = SamAutomaticMaskGenerator(sam.model, **settings)
        run = generator.generate
    else:
        from ovseg.models.proposals import SAMAutomaticProposals
        generator = SAMAutomaticProposals(sam=sam, **settings)
        run = generator
    with torch.no_grad():
        start, cpu_start = time.perf_counter(), time.process_time()
        sam.embed_image(image)
        encoder_s, encoder_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rss_before = rss_mib('VmRSS')
    reset = reset_peak_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    out = run(image)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = rss_mib('VmHWM')
    if args.run_one == 'stock':
        masks = np.stack([r['segmentation'] for r in out]) if out else np.zeros((0,) + image.shape[:2], bool)
        iou = np.array([r['predicted_iou'] for r in out], np.float32)
        stability = np.array([r['stability_score'] for r in out], np.float32)
        boxes = np.array([r['bbox'] for r in out], np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    else:
        masks, iou, stability = out.masks.numpy(), out.iou.numpy(), out.stability.numpy()
        boxes = out.boxes.numpy().astype(np.float64)
    np.savez_compressed(args.out, masks=np.packbits(masks, axis=-1), shape=np.array(masks.shape), iou=iou,
                        stability=stability, boxes=boxes)
    figures = dict(seconds=seconds, cpu_seconds=cpu_seconds, encoder_seconds=encoder_s,
                   encoder_cpu_seconds=encoder_cpu, peak_rss_mib=peak, rss_before_mib=rss_before,
                   peak_reset=reset, stage_peak_increase_mib=peak - rss_before if reset else None,
                   num_masks=int(len(iou)), image_shape=list(image.shape[:2]),
                   threads=torch.get_num_threads())
    with open(args.out + '.json', 'w') as f:
        json.dump(figures, f)


def compare(stock, ours):
    """Identity of the two outputs (masks, order, IoU, stability, boxes)."""
    same_shape = tuple(stock['shape']) == tuple(ours['shape'])
    result = dict(same_count=same_shape, num_masks=int(stock['shape'][0]))
    if same_shape:
        result.update(
            masks_identical=bool(np.array_equal(stock['masks'], ours['masks'])),
            differing_mask_bits=int(np.unpackbits(stock['masks'] ^ ours['masks']).sum()),
            iou_max_abs_diff=float(np.abs(stock['iou'] - ours['iou']).max(initial=0)),
            stability_max_abs_diff=float(np.abs(stock['stability'] - ours['stability']).max(initial=0)),
            boxes_identical=bool(np.array_equal(stock['boxes'], ours['boxes'])))
    return result


def _run_child(name, out, argv):
    cmd = [sys.executable, os.path.abspath(__file__), '--run-one', name, '--out', out] + list(argv)
    subprocess.run(cmd, check=True)
    with open(out + '.json') as f:
        return json.load(f)


def summarise(runs):
    """Per generator: the fastest run's figures (wall and CPU) and the median wall time."""
    best = min(runs, key=lambda r: r['seconds'])
    return dict(best, cpu_seconds=min(r['cpu_seconds'] for r in runs),
                median_seconds=float(np.median([r['seconds'] for r in runs])),
                peak_rss_mib=max(r['peak_rss_mib'] for r in runs),
                stage_peak_increase_mib=max((r['stage_peak_increase_mib'] or 0) for r in runs),
                all_seconds=[round(r['seconds'], 2) for r in runs])


def main(argv=None):
    args = parse_args(argv)
    if args.run_one:
        return run_one(args)
    child_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a]
    results = dict(settings={k: v for k, v in vars(args).items() if k not in ('run_one', 'out', 'json')},
                   torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                   cpu_count=os.cpu_count())
    names = [n.strip() for n in args.generators.split(',') if n.strip()]
    if not names or not set(names) <= {'stock', 'ovseg', 'sam2'}:
        raise SystemExit(f'--generators takes stock, ovseg and sam2, got {args.generators!r}')
    # ABBA order (A B, B A, ...) so that load drifts on a shared machine hit every generator alike
    order = [name for i in range(args.repeats) for name in (names if i % 2 == 0 else names[::-1])]
    runs, outputs = {name: [] for name in names}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(order):
            out = os.path.join(tmp, f'{name}_{i}.npz')
            runs[name].append(_run_child(name, out, child_argv))
            outputs.setdefault(name, dict(np.load(out)))
        if {'stock', 'ovseg'} <= set(names):  # the same network: the outputs must be identical
            results['identity'] = compare(outputs['stock'], outputs['ovseg'])
    for name in runs:
        results[name] = summarise(runs[name])
    if {'stock', 'ovseg'} <= set(names):
        stock, ours = results['stock'], results['ovseg']
        results['speedup'] = stock['seconds'] / ours['seconds']
        results['speedup_cpu'] = stock['cpu_seconds'] / ours['cpu_seconds']
        stage = [r['seconds'] - r['encoder_seconds'] for r in (stock, ours)]
        results['speedup_without_encoder'] = stage[0] / stage[1] if stage[1] > 0 else None
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
