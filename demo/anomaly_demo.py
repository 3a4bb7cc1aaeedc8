"""Anomaly maps of images of one object: zero-shot, or few-shot with normal reference images.

Examples::

    python demo/anomaly_demo.py bottle_001.png --class-name bottle             # WinCLIP+ zero-shot
    python demo/anomaly_demo.py bottle_*.png --class-name bottle --references good_000.png good_001.png
    python demo/anomaly_demo.py part.png --config configs/anomaly/adaptclip_vit-l14-336_1shot_mvtec.py \\
        --checkpoint adaptclip_visa_ovseg.pth --references good.png --out-dir heat_maps
    python demo/anomaly_demo.py part.png --random-weights                      # smoke test, no weights

For every image it prints the image score and writes ``<out-dir>/<image name>_anomaly.png`` (the image with
a JET heat map of the anomaly map, 0 blue to 1 red, and a colour bar). Exit codes: 0 success; 1 bad input
(image, config, checkpoint, references, an existing output without --force); 2 pretrained weights
unavailable (cached nowhere and no network).
"""
import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / 'configs' / 'anomaly' / 'winclip_vit-b16-plus-240_1shot_mvtec.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('images', nargs='+', help='image files of one object class')
    parser.add_argument('--class-name', default='object', help="what the images show (default 'object')")
    parser.add_argument('--references', nargs='+', default=None,
                        help='normal images of the same object (few-shot configs: WinCLIP+, AdaptCLIP)')
    parser.add_argument('--config', default=str(DEFAULT_CONFIG),
                        help='anomaly config (default: WinCLIP+ ViT-B-16-plus-240)')
    parser.add_argument('--checkpoint', default=None,
                        help='full-model or open_clip state dict (loaded with weights_only=True)')
    parser.add_argument('--out-dir', default='.', help='folder of the heat-map PNGs (default: .)')
    parser.add_argument('--force', action='store_true', help='overwrite existing heat-map PNGs')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (default: cpu)")
    parser.add_argument('--random-weights', action='store_true',
                        help='random weights, nothing downloaded: a smoke test whose output is meaningless')
    parser.add_argument('--max-pixels', type=int, default=100_000_000, help='refuse larger images')
    return parser.parse_args(argv)


def _outputs(args):
    return [Path(args.out_dir) / f'{Path(image).stem}_anomaly.png' for image in args.images]


def main(argv=None):
    """Run the demo; returns the process exit code (see the module docstring)."""
    args = parse_args(argv)
    outputs = _outputs(args)
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.force:
        print(f'error: {existing[0]} already exists; choose another --out-dir or add --force.', file=sys.stderr)
        return 1
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from ovseg.apis import AnomalyInferencer, CheckpointMismatchError
    from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError
    from ovseg.utils.image_io import ImageLoadError
    try:
        inferencer = AnomalyInferencer(args.config, checkpoint=args.checkpoint, device=args.device,
                                       random_weights=args.random_weights, max_pixels=args.max_pixels)
        results = inferencer(list(args.images), args.class_name, references=args.references,
                             return_overlay=True)
    except WeightsUnavailableError as err:
        print(f'{err} Re-run with --checkpoint PATH, or --random-weights for a smoke test.', file=sys.stderr)
        return 2
    except (ImageLoadError, CheckpointMismatchError, FileNotFoundError, RuntimeError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if args.random_weights:
        print('NOTE: random weights (--random-weights): the scores below are meaningless.')
    from PIL import Image
    mode = f'{len(args.references)}-shot' if args.references else 'zero-shot'
    for image, result, out in zip(args.images, results, outputs):
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(result['overlay']).save(out, format='PNG')
        print(f'{image}: score {result["score"]:.4f} ({mode}, {args.class_name!r}) -> {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
