"""Per-image cost of SAM 3 open-vocabulary segmentation on this machine: image encoding vs per-prompt share.

Usage::

    PYTHONPATH=. python tools/analysis/sam3_benchmark.py [--arch sam3 | --pretrained ID_OR_FOLDER]
        [--image-size 1008] [--size 512] [--prompts 8] [--prompt-batch 4] [--precisions fp32,bf16]
        [--classes 20,150,847] [--threads N] [--repeats 1] [--seed 0] [--json OUT]

``SAM3Segmentor`` encodes the image once, the text prompts once per vocabulary, and runs the
prompt-conditioned part (DETR encoder and decoder, presence / box / mask / semantic heads, then
SegEarth-OV3's fusion upsampled to the image) per prompt. This tool times the three parts separately on
``--prompts`` prompts (the first names of the ADE-847 vocabulary) in batches of ``--prompt-batch``, and
reports the per-image cost for vocabularies of ``--classes`` classes (one prompt per class) as
``image encoding + classes x per-prompt time``, with the one-off text encoding of the vocabulary beside
it. The per-prompt part does not depend on the prompt's words, so the extrapolation is linear; the
measured prompts are few to keep runs short on a shared CPU. Default weights: random, of the released
size (``--arch sam3``: ViT 1024-d x 32 blocks at 1008 x 1008, 200 queries); time is what matters here.
Reported per precision: the fastest of ``--repeats`` runs (wall and CPU seconds; on a shared machine the
CPU seconds, summed over threads, are the steadier figure), peak resident memory of the process (Linux).
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark SAM 3 text-prompted segmentation.')
    parser.add_argument('--arch', default='sam3', help="random-weight size: sam3 (released, default) or tiny")
    parser.add_argument('--pretrained', help='Hugging Face id or local folder (instead of random weights)')
    parser.add_argument('--image-size', type=int, default=1008, help="SAM 3's input side. Default 1008")
    parser.add_argument('--size', type=int, default=512, help='long side of the test image. Default 512')
    parser.add_argument('--prompts', type=int, default=8, help='prompts timed. Default 8')
    parser.add_argument('--prompt-batch', type=int, default=4,
                        help="prompts per forward (SAM3Segmentor's default). Default 4")
    parser.add_argument('--precisions', default='fp32,bf16', help="comma-separated. Default 'fp32,bf16'")
    parser.add_argument('--classes', default='20,150,847',
                        help='vocabulary sizes reported. Default 20,150,847')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    parser.add_argument('--repeats', type=int, default=1,
                        help='runs per part; the fastest is kept. Default 1')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='write the results to this JSON file')
    return parser.parse_args(argv)


def load_test_image(size):
    """scikit-image's astronaut, (H, W, 3) uint8 RGB with long side ``size`` (PIL bicubic)."""
    import skimage.data
    from PIL import Image
    img = Image.fromarray(skimage.data.astronaut())
    scale = size / max(img.size)
    return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC))


def _timed(fn, repeats):
    """(result of the last call, fastest wall seconds, CPU seconds of that call)."""
    best = None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall, used = time.perf_counter() - start, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, used)
    return out, best[0], best[1]


def measure(prompter, image, prompts, args, precision):
    """Seconds of the image encoding, of the text encoding per prompt and of one prompt's decoding."""
    from ovseg.models.segmentors.sam3_segmentor import fuse_prompt_maps
    from ovseg.models.utils.precision import autocast_for, float32_region, upcast
    device = prompter.device
    size = image.shape[:2]
    with torch.no_grad():
        with autocast_for(precision, device):
            encoded, enc_s, enc_cpu = _timed(lambda: prompter.embed_image(image), args.repeats)
            text, text_s, _ = _timed(lambda: prompter.encode_text(prompts), args.repeats)

        def decode_all():
            for start in range(0, len(prompts), args.prompt_batch):
                with autocast_for(precision, device):
                    out = prompter.predict(encoded, text.rows(slice(start, start + args.prompt_batch)))
                with float32_region(device):
                    fuse_prompt_maps(upcast(out), size)

        _, dec_s, dec_cpu = _timed(decode_all, args.repeats)
    return dict(image_encoding_s=enc_s, image_encoding_cpu_s=enc_cpu, text_per_prompt_s=text_s / len(prompts),
                per_prompt_s=dec_s / len(prompts), per_prompt_cpu_s=dec_cpu / len(prompts))


def main(argv=None):
    args = parse_args(argv)
    from ovseg.utils.process_memory import rss_mib  # after --help
    if args.threads:
        torch.set_num_threads(args.threads)
    from ovseg.models.proposals import SAM3TextPrompter
    from ovseg.text import load_vocabulary
    torch.manual_seed(args.seed)
    build_start = time.perf_counter()
    prompter = (SAM3TextPrompter(pretrained=args.pretrained) if args.pretrained else
                SAM3TextPrompter(arch=args.arch, image_size=args.image_size))
    build_s = time.perf_counter() - build_start
    image = load_test_image(args.size)
    prompts = list(load_vocabulary('ade847').names[:args.prompts])
    results = dict(settings=vars(args), torch=torch.__version__, threads=torch.get_num_threads(),
                   cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                   parameters=sum(p.numel() for p in prompter.parameters()), build_s=build_s,
                   image_shape=list(image.shape[:2]), prompts=prompts)
    classes = [int(c) for c in args.classes.split(',')]
    for precision in args.precisions.split(','):
        part = measure(prompter, image, prompts, args, precision)
        part['per_image_s'] = {k: part['image_encoding_s'] + k * part['per_prompt_s'] for k in classes}
        part['per_image_cpu_s'] = {k: part['image_encoding_cpu_s'] + k * part['per_prompt_cpu_s']
                                   for k in classes}
        part['prompt_share'] = {k: k * part['per_prompt_s'] / part['per_image_s'][k] for k in classes}
        part['vocabulary_text_s'] = {k: k * part['text_per_prompt_s'] for k in classes}
        part['peak_rss_mib'] = rss_mib('VmHWM')
        results[precision] = part
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
