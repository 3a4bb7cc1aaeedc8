"""Segment one image with a free-form vocabulary and write an overlay PNG.

Examples::

    python demo/image_demo.py                    # bundled astronaut photo, default vocabulary
    python demo/image_demo.py photo.jpg --vocab "cat, dog, person|man" --out photo_seg.png
    python demo/image_demo.py --random-weights   # smoke test without any weights

Exit codes: 0 success; 1 bad input (image, vocabulary, config, checkpoint, existing output file);
2 pretrained weights unavailable (cached nowhere and no network).
"""
import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO_ROOT / 'demo' / 'assets' / 'astronaut.jpg'
DEFAULT_CONFIG = REPO_ROOT / 'configs' / 'maskclip' / 'maskclip_vit-b16_ade150.py'
# Classes in the bundled photo (Eileen Collins, NASA, public domain); '|' separates synonyms.
DEFAULT_VOCAB = 'astronaut|person, flag, space shuttle|rocket, helmet, wall|backdrop'
# Refuse images above 100 megapixels: decoding and blending them would need gigabytes of memory.
DEFAULT_MAX_PIXELS = 100_000_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image', nargs='?', default=str(DEFAULT_IMAGE),
                        help='image file (default: the bundled astronaut photo)')
    parser.add_argument('--config', default=str(DEFAULT_CONFIG), help='ovseg config file')
    parser.add_argument('--checkpoint', default=None,
                        help='full-model or open_clip state dict (loaded with weights_only=True)')
    parser.add_argument('--vocab', default=None,
                        help="classes separated by commas, synonyms by '|', or a built-in name "
                             f"such as 'ade150' (default: {DEFAULT_VOCAB!r} for the bundled "
                             "image, else the config's vocabulary)")
    parser.add_argument('--out', default=None,
                        help='overlay PNG path (default: <image name>_overlay.png)')
    parser.add_argument('--force', action='store_true', help='overwrite --out if it exists')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (default: cpu)")
    parser.add_argument('--random-weights', action='store_true',
                        help='random weights, nothing downloaded: a smoke test whose output is '
                             'meaningless')
    parser.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS,
                        help=f'refuse larger images (default: {DEFAULT_MAX_PIXELS})')
    return parser.parse_args(argv)


def format_shares(shares):
    """Per-class pixel shares as a small text table, largest first (absent classes included)."""
    width = max(len('class'), *(len(name) for name in shares))
    lines = [f'{"class":<{width}}  pixels', f'{"-" * width}  ------']
    for name, share in sorted(shares.items(), key=lambda item: -item[1]):
        lines.append(f'{name:<{width}}  {100.0 * share:5.1f}%')
    return '\n'.join(lines)


def _ensure_importable():
    """Let the demo run from a source checkout without ``pip install -e .`` (``demo.app`` too)."""
    import importlib.util
    if importlib.util.find_spec('ovseg') is None and (REPO_ROOT / 'ovseg').is_dir():
        sys.path.insert(0, str(REPO_ROOT))
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))


def _output_path(args):
    if args.out:
        return Path(args.out)
    return Path(f'{Path(args.image).stem}_overlay.png')


def _save_png(path, rgb):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format='PNG')


def _run(args):
    """Read the image (its problems are reported before the model loads), build the inferencer and
    segment the image; returns the result dict."""
    from demo.app.checkpoint_note import building, loaded_line
    from ovseg.apis import OVSegInferencer
    from ovseg.utils.image_io import load_image
    rgb = load_image(args.image, max_pixels=args.max_pixels)
    vocab = args.vocab
    if vocab is None and Path(args.image).resolve() == DEFAULT_IMAGE:
        vocab = DEFAULT_VOCAB
    with building(args.checkpoint) as watch:
        inferencer = OVSegInferencer(args.config, checkpoint=args.checkpoint, device=args.device,
                                     vocabulary=vocab, random_weights=args.random_weights,
                                     max_pixels=args.max_pixels)
    if args.checkpoint and not watch.confirmed:
        print(loaded_line(args.checkpoint, Path(args.config).name))
    return inferencer(rgb, return_overlay=True, return_logits=False)


def main(argv=None):
    """Run the demo; returns the process exit code (see the module docstring)."""
    args = parse_args(argv)
    out = _output_path(args)
    if out.exists() and not args.force:
        print(f'error: {out} already exists; choose another --out or add --force to overwrite it.',
              file=sys.stderr)
        return 1
    if not Path(args.image).is_file():
        print(f'error: image {args.image}: ' + ('is a directory, not a file.' if Path(args.image).is_dir()
                                                else 'no such file.'), file=sys.stderr)
        return 1
    # Imported here so --help and the refusals above answer without loading torch; the image is read
    # (and any problem with it reported) before the model is built.
    _ensure_importable()
    from ovseg.apis import CheckpointMismatchError
    from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError
    from ovseg.text import VocabularyError
    from ovseg.utils.image_io import ImageLoadError
    try:
        result = _run(args)
    except WeightsUnavailableError as err:
        print(f'{err} Re-run with --checkpoint PATH, or --random-weights for a smoke test.',
              file=sys.stderr)
        return 2
    except (ImageLoadError, VocabularyError, CheckpointMismatchError, FileNotFoundError,
            RuntimeError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    if args.random_weights:
        print('NOTE: random weights (--random-weights): the segmentation below is meaningless.')
    print(format_shares(result['shares']))
    _save_png(out, result['overlay'])
    print(f'overlay written to {out.resolve()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
