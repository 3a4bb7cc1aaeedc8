"""Web demo: open-vocabulary segmentation, SAM click/box prompts and zero-/few-shot anomaly maps.

Examples::

    python demo/gradio_app.py                                   # MaskCLIP, http://127.0.0.1:7860
    python demo/gradio_app.py --random-weights                  # try the interface offline
    python demo/gradio_app.py --model maskclip --model clip-dinoiser clip_dinoiser.pth \\
        --sam-checkpoint sam_vit_b_01ec64.pth --port 7861
    python demo/gradio_app.py --config my_config.py --checkpoint my.pth --device cuda
    python demo/gradio_app.py --sam-backend sam2                # clicks/boxes with SAM 2.1 (transformers)
    python demo/gradio_app.py --model sam3 --model maskclip     # SAM 3 text prompts (facebook/sam3, gated)

Models are chosen here, never from the page. Exit codes: 0 after the server stops; 1 bad arguments;
2 pretrained weights unavailable (cached nowhere and no network).
"""
import argparse
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# WinCLIP+: zero-shot WinCLIP without reference images, few-shot with the ones given in the page.
DEFAULT_ANOMALY_CONFIG = REPO_ROOT / 'configs' / 'anomaly' / 'winclip_vit-b16-plus-240_1shot_mvtec.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=None,
                        help="first model: a preset (maskclip, clip-dinoiser, sam-refined, sam2-refined, "
                             "sam3, fcclip) or a config file (default: maskclip)")
    parser.add_argument('--checkpoint', default=None, help='weights of --config (weights_only)')
    parser.add_argument('--model', nargs='+', action='append', default=[],
                        metavar=('NAME', 'CHECKPOINT'),
                        help='another model for the drop-down: a preset or config file, optionally '
                             'followed by its checkpoint (repeatable)')
    parser.add_argument('--sam-checkpoint', default=None,
                        help='SAM weights (official sam_vit_*.pth); enables the click/box mode')
    parser.add_argument('--sam-arch', default='vit_b', choices=['vit_b', 'vit_l', 'vit_h', 'tiny'],
                        help="SAM image encoder (default vit_b; 'tiny' is for tests)")
    parser.add_argument('--sam-image-size', type=int, default=1024,
                        help='SAM input side (1024 for released weights)')
    parser.add_argument('--sam-backend', default='segment-anything', choices=['segment-anything', 'sam2'],
                        help="SAM of the click/box mode: segment-anything (--sam-checkpoint) or sam2 "
                             "(--sam2-model, through transformers)")
    parser.add_argument('--sam2-model', default='facebook/sam2.1-hiera-large',
                        help='SAM 2 Hugging Face id or local folder (click/box mode with --sam-backend sam2, '
                             'and the sam2-refined preset)')
    parser.add_argument('--sam2-arch', default='hiera_l',
                        choices=['hiera_t', 'hiera_s', 'hiera_b+', 'hiera_l', 'tiny'],
                        help="SAM 2 size with --random-weights (default hiera_l; 'tiny' is for tests)")
    parser.add_argument('--anomaly-config', default=str(DEFAULT_ANOMALY_CONFIG),
                        help="single-image anomaly config (default WinCLIP+: zero-shot, or few-shot with "
                             "reference images; AdaptCLIP needs --anomaly-checkpoint); 'none' hides the mode")
    parser.add_argument('--anomaly-checkpoint', default=None, help='weights of --anomaly-config')
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:N]' (default: cpu)")
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default 127.0.0.1: this machine only)')
    parser.add_argument('--port', type=int, default=7860, help='port (default 7860)')
    parser.add_argument('--random-weights', action='store_true',
                        help='random weights for every model, nothing downloaded: try the '
                             'interface offline (results are meaningless)')
    parser.add_argument('--max-side', type=int, default=1024,
                        help='downscale larger images to this long side (default 1024)')
    parser.add_argument('--max-pixels', type=int, default=40_000_000,
                        help='refuse images with more pixels (default 40 MP)')
    parser.add_argument('--max-upload-mb', type=float, default=25.0, help='upload limit (MB)')
    parser.add_argument('--max-classes', type=int, default=50, help='classes per vocabulary')
    parser.add_argument('--max-loaded', type=int, default=2, help='models kept in memory at once')
    parser.add_argument('--max-queue', type=int, default=64, help='requests waiting at most')
    parser.add_argument('--no-examples', action='store_true', help='no example images')
    return parser.parse_args(argv)


def _ensure_importable():
    """Run from a source checkout: the repository root holds ``ovseg`` and ``demo.app``."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def model_specs(args):
    """--config/--checkpoint and every --model -> ModelSpecs (first = default)."""
    from demo.app.models import resolve_model
    entries = []
    if args.config is not None or not args.model:
        entries.append((args.config or 'maskclip', args.checkpoint))
    elif args.checkpoint is not None:
        raise ValueError('--checkpoint belongs to --config; give --config too.')
    for values in args.model:
        if len(values) > 2:
            raise ValueError(f'--model takes NAME [CHECKPOINT], got {values}.')
        entries.append((values[0], values[1] if len(values) == 2 else None))
    specs = [resolve_model(name, ckpt, args.random_weights, args.sam_checkpoint, sam2_model=args.sam2_model)
             for name, ckpt in entries]
    if args.config is not None and Path(args.config).is_file():
        from demo.app.models import ModelSpec, label_for_config
        first = specs[0]
        specs[0] = ModelSpec(label_for_config(args.config), first.config, first.checkpoint,
                             first.cfg_options)
    return specs


def sam2_factory(args):
    """(factory, '') for the click/box mode on SAM 2; the weights are looked up now (fail fast offline)."""
    from ovseg.models.proposals import SAM2Predictor
    if args.random_weights:
        return lambda: SAM2Predictor(arch=args.sam2_arch).to(args.device), ''
    from ovseg.models.proposals.hf_weights import resolve_model_folder
    folder = resolve_model_folder(args.sam2_model)  # WeightsUnavailableError: exit code 2
    return lambda: SAM2Predictor(pretrained=folder).to(args.device), ''


def sam_factory(args):
    """(factory or None, reason) for the click/box mode."""
    try:
        from ovseg.models.proposals import InteractivePrompter, SAMPredictor  # noqa: F401
    except ImportError as err:
        return None, f'this ovseg has no interactive SAM prompter ({err}).'
    if args.sam_backend == 'sam2':
        return sam2_factory(args)
    if args.sam_checkpoint is None and not args.random_weights:
        return None, ('start the demo with `--sam-checkpoint sam_vit_b_01ec64.pth` (SAM weights) '
                      'or `--random-weights`.')
    if args.sam_checkpoint is not None and not Path(args.sam_checkpoint).is_file():
        raise ValueError(f'--sam-checkpoint {args.sam_checkpoint}: no such file.')
    checkpoint = None if args.random_weights else args.sam_checkpoint

    def build():
        return SAMPredictor(arch=args.sam_arch, checkpoint=checkpoint,
                            image_size=args.sam_image_size).to(args.device)

    return build, ''


def anomaly_factory(args):
    """(factory or None, reason) for the anomaly mode."""
    from demo.app.anomaly import AnomalyUnavailable, build_anomaly_inferencer, check_anomaly_config
    if str(args.anomaly_config).lower() == 'none':
        return None, 'disabled with `--anomaly-config none`.'
    try:
        check_anomaly_config(args.anomaly_config)
    except AnomalyUnavailable as err:
        return None, str(err)

    def build():
        return build_anomaly_inferencer(args.anomaly_config, args.anomaly_checkpoint, args.device,
                                        args.random_weights)

    return build, ''


def build_services(args):
    """Parse the models, load the default one (fail fast on missing weights), set up the modes."""
    from demo.app.limits import InputLimits
    from demo.app.models import ModelPool
    from demo.app.services import DemoServices
    limits = InputLimits(max_pixels=args.max_pixels, max_side=args.max_side,
                         max_upload_mb=args.max_upload_mb, max_classes=args.max_classes)
    pool = ModelPool(model_specs(args), device=args.device, random_weights=args.random_weights,
                     max_loaded=args.max_loaded)
    pool.get(pool.default_label)
    sam, sam_reason = sam_factory(args)
    anomaly, anomaly_reason = anomaly_factory(args)
    return DemoServices(pool, limits, sam, sam_reason, anomaly, anomaly_reason)


def main(argv=None):
    """Start the server; returns the exit code (see the module docstring)."""
    args = parse_args(argv)
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # no telemetry calls to the network
    _ensure_importable()
    from ovseg.apis import CheckpointMismatchError
    from ovseg.models.backbones.open_clip_loader import WeightsUnavailableError
    try:
        services = build_services(args)
    except WeightsUnavailableError as err:
        print(f'{err} Re-run with --checkpoint PATH, or --random-weights to try the interface.',
              file=sys.stderr)
        return 2
    except (CheckpointMismatchError, FileNotFoundError, ValueError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    from demo.app.ui import build_app, launch_app
    if args.random_weights:
        print('NOTE: --random-weights: every model has random weights; results are meaningless.')
    app = build_app(services, examples=not args.no_examples)
    launch_app(app, services, host=args.host, port=args.port, max_queue=args.max_queue)
    return 0


if __name__ == '__main__':
    sys.exit(main())
