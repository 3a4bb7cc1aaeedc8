"""How far reduced precision moves a segmentor's outputs, and how much faster it is.

Usage::

    python tools/analysis/precision_agreement.py CONFIG [--precision bf16] [--weights det|random]
        [--seed 0] [--images astronaut chelsea coffee rocket immunohistochemistry] [--size 448] [--parity]
        [--templates single] [--threads N] [--json OUT] [--cfg-options k=v ...]

The model of CONFIG (an ``OVSegmentor``: MaskCLIP, CLIP-DINOiser, ...) runs every input twice, in
float32 and in ``--precision``, with the same weights, in whole-image mode. Reported per input and
overall:

- ``agreement``: fraction of pixels whose argmax class is the same (network resolution);
- ``max_logit_diff``: largest absolute difference of the head's class logits (scaled cosines, before
  the softmax and the test-time rules);
- ``max_prob_diff``: largest absolute difference of the final class probabilities;
- ``flip_max_margin``: the largest fp32 top-2 logit margin among head locations whose argmax
  changed, and ``decisive_agreement``: agreement of the head's argmax over the locations whose fp32
  margin exceeds ``DECISIVE_MARGIN`` (0.1 logit = 0.001 in cosine at logit scale 100), with
  ``decisive_fraction`` of the locations. Untrained (deterministic or random) weights give classes
  nearly tied logits, so the plain agreement understates what trained weights see;
- the wall time of each precision (after one untimed warm-up) and their ratio.

Inputs: scikit-image's bundled photographs (``--images``; resized to short side ``--size`` and centre
cropped to ``size x size``), and with ``--parity`` the inputs of the parity fixtures in
``$OVSEG_PARITY_DIR/maskclip_dinoiser`` (their normalised pixel values, 448x448 and 448x672).

Weights (nothing is downloaded): ``det`` (default) fills every float tensor with the parity fixtures'
deterministic rule (``detweights.py``, seed ``--seed``), ``random`` keeps the constructors' random
initialisation, ``config`` keeps the config's pretrained tags and checkpoints (needs them locally).
"""
import argparse
import json
import time

import numpy as np
import torch
from mmengine.config import DictAction

# ovseg is imported by the functions that use it: --help answers without the model stack.

DEFAULT_IMAGES = ('astronaut', 'chelsea', 'coffee', 'rocket', 'immunohistochemistry')
# fp32 top-2 logit margin (scaled cosine units) above which a location counts as decided
DECISIVE_MARGIN = 0.1


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='fp32 vs reduced-precision agreement and speed.')
    parser.add_argument('config')
    parser.add_argument('--precision', default='bf16', choices=['bf16', 'fp16'])
    parser.add_argument('--weights', default='det', choices=['det', 'random', 'config'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--images', nargs='*', default=list(DEFAULT_IMAGES),
                        help='scikit-image data names. Default: ' + ' '.join(DEFAULT_IMAGES))
    parser.add_argument('--size', type=int, default=448, help='input side. Default 448')
    parser.add_argument('--parity', action='store_true', help='add the parity fixtures\' inputs')
    parser.add_argument('--templates', default='single',
                        help="text templates (the image path does not depend on them). Default single")
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int)
    parser.add_argument('--json')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def build_segmentor(args):
    """The config's model with the requested weights, whole-image mode, eval, on the device."""
    from ovseg.apis.model_loading import load_config, set_text_templates, strip_weight_sources
    from ovseg.registry import MODELS
    from ovseg.testing import det_state_dict_for
    cfg = load_config(args.config, args.cfg_options)
    if args.weights != 'config':
        strip_weight_sources(cfg.model)
    set_text_templates(cfg.model, args.templates)
    cfg.model['test_cfg'] = dict(mode='whole')
    torch.manual_seed(args.seed)
    model = MODELS.build(cfg.model)
    if args.weights == 'det':  # the networks only: the head's fixed logit scale stays
        for part in (model.backbone.clip, getattr(model, 'refiner', None)):
            if part is not None:
                part.load_state_dict(det_state_dict_for(part, args.seed), strict=False)
    return model.to(args.device).eval()


def skimage_input(name, size, model):
    """A bundled scikit-image photograph -> (1, 3, size, size) normalised tensor."""
    import cv2
    from skimage import data
    rgb = getattr(data, name)()
    rgb = np.stack([rgb] * 3, -1) if rgb.ndim == 2 else rgb[..., :3]
    scale = size / min(rgb.shape[:2])
    height, width = (max(size, round(s * scale)) for s in rgb.shape[:2])
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
    top, left = (height - size) // 2, (width - size) // 2
    rgb = rgb[top:top + size, left:left + size]
    pre = model.data_preprocessor
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    return (x - pre.mean.cpu()) / pre.std.cpu()  # mean/std are RGB-ordered in 0-255 units


def parity_inputs():
    """(name, normalised input, vocabulary) of each maskclip_dinoiser parity case."""
    from ovseg.testing import parity_dir
    root = parity_dir('maskclip_dinoiser')
    if root is None:
        raise FileNotFoundError('--parity: no maskclip_dinoiser fixtures (set OVSEG_PARITY_DIR).')
    manifest = json.loads((root / 'manifest.json').read_text())
    for case, info in sorted(manifest['cases'].items()):
        fx = np.load(root / info['file'])
        yield case, torch.from_numpy(fx['pixel_values']), [[name] for name in info['vocab']]


def run_precision(model, x, precision):
    """One whole-image inference -> (head logits, probabilities, seconds), both float32 CPU."""
    captured = {}
    handle = model.head.register_forward_hook(lambda m, a, out: captured.update(logits=out))
    model.precision = precision
    try:
        start = time.perf_counter()
        with torch.no_grad():
            probs = model.inference(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    finally:
        handle.remove()
        model.precision = 'fp32'
    return captured['logits'].float().cpu(), probs.float().cpu(), seconds


def compare(model, x, precision):
    """fp32 vs ``precision`` on one input -> dict of agreement, differences and times."""
    ref_logits, ref_probs, ref_s = run_precision(model, x, 'fp32')
    logits, probs, s = run_precision(model, x, precision)
    agree = (ref_probs.argmax(1) == probs.argmax(1)).float().mean().item()
    top2 = ref_logits.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]  # fp32 decision margin of each logit location
    flipped = ref_logits.argmax(1) != logits.argmax(1)
    decisive = margin > DECISIVE_MARGIN
    return dict(pixels=int(ref_probs[:, 0].numel()), agreement=agree,
                flip_max_margin=float(margin[flipped].max()) if flipped.any() else 0.0,
                decisive_fraction=decisive.float().mean().item(),
                decisive_agreement=(~flipped[decisive]).float().mean().item()
                if decisive.any() else 1.0,
                max_logit_diff=(logits - ref_logits).abs().max().item(),
                max_prob_diff=(probs - ref_probs).abs().max().item(),
                fp32_s=ref_s, reduced_s=s)


def run(args):
    model = build_segmentor(args)
    device = torch.device(args.device)
    inputs = [(name, skimage_input(name, args.size, model), None) for name in args.images]
    if args.parity:
        inputs += list(parity_inputs())
    vocabulary = model.vocabulary
    rows = []
    for index, (name, x, vocab) in enumerate(inputs):
        model.set_vocabulary(vocab if vocab is not None else vocabulary)
        x = x.to(device)
        if index == 0:
            compare(model, x, args.precision)  # warm-up: first-call allocations, kernel choices
        row = compare(model, x, args.precision)
        row.update(input=name, shape=list(x.shape[-2:]), classes=len(model.class_names))
        rows.append(row)
    pixels = sum(r['pixels'] for r in rows)
    summary = dict(
        config=args.config, precision=args.precision, weights=args.weights, seed=args.seed,
        device=str(device), threads=torch.get_num_threads(), torch=torch.__version__,
        agreement=sum(r['agreement'] * r['pixels'] for r in rows) / pixels,
        min_agreement=min(r['agreement'] for r in rows),
        max_logit_diff=max(r['max_logit_diff'] for r in rows),
        max_prob_diff=max(r['max_prob_diff'] for r in rows),
        flip_max_margin=max(r['flip_max_margin'] for r in rows),
        decisive_agreement=min(r['decisive_agreement'] for r in rows),
        speedup=sum(r['fp32_s'] for r in rows) / sum(r['reduced_s'] for r in rows), inputs=rows)
    return summary


def format_table(summary):
    p = summary['precision']
    lines = [f"| input | size | K | argmax agreement | max logit diff | max prob diff | "
             f"largest flipped margin | decided (share) agreement | fp32 s | {p} s |",
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in summary['inputs']:
        lines.append(f"| {r['input']} | {r['shape'][0]}x{r['shape'][1]} | {r['classes']} | "
                     f"{100 * r['agreement']:.2f}% | {r['max_logit_diff']:.3f} | "
                     f"{r['max_prob_diff']:.3f} | {r['flip_max_margin']:.3f} | "
                     f"{100 * r['decisive_agreement']:.2f}% ({100 * r['decisive_fraction']:.0f}%) | "
                     f"{r['fp32_s']:.2f} | {r['reduced_s']:.2f} |")
    lines.append(f"\nAll inputs: agreement {100 * summary['agreement']:.2f}% (lowest "
                 f"{100 * summary['min_agreement']:.2f}%), max logit diff "
                 f"{summary['max_logit_diff']:.3f}, largest flipped fp32 margin "
                 f"{summary['flip_max_margin']:.3f}, agreement where the fp32 margin > "
                 f"{DECISIVE_MARGIN}: {100 * summary['decisive_agreement']:.2f}%, "
                 f"{p} speed-up {summary['speedup']:.2f}x "
                 f"({summary['weights']} weights, {summary['threads']} threads, {summary['device']})")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = run(args)
    print(format_table(summary))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(summary, f, indent=2)
    return summary


if __name__ == '__main__':
    main()
