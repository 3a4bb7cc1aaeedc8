"""Convert the original CLIP-DINOiser checkpoint (``checkpoints/last.pt``) into an ovseg checkpoint.

The original file holds ``{'model_state_dict': {'obj_proj.weight', 'obj_proj.bias', 'bkg_decoder.weight',
'bkg_decoder.bias', ...}}`` (CLIP weights, if present, are not needed: ovseg loads them from open_clip).
The output holds ``{'state_dict': {'refiner.obj_proj.weight', ...}, 'meta': {...}}`` and loads with
``torch.load(weights_only=True)``; ``tools/test.py CONFIG OUT`` reads it.

Usage::

    python tools/model_converters/clip_dinoiser_to_ovseg.py checkpoints/last.pt clip_dinoiser_ovseg.pth
"""
import argparse
import os
import sys

import torch

EXPECTED = {
    'obj_proj.weight': 4, 'obj_proj.bias': 1, 'bkg_decoder.weight': 4, 'bkg_decoder.bias': 1,
}


def convert(state):
    """Original ``model_state_dict`` -> ovseg state dict (``refiner.*``).

    Raises:
        KeyError: a required key is missing or has the wrong rank (the message lists the keys found).
    """
    found = sorted(state)
    out = {}
    for key, rank in EXPECTED.items():
        matches = [k for k in state if k == key or k.endswith('.' + key)]
        if len(matches) != 1 or state[matches[0]].dim() != rank:
            raise KeyError(f'Not a CLIP-DINOiser checkpoint: expected exactly one {key!r} of rank {rank}; '
                           f'keys found: {found[:20]}{" ..." if len(found) > 20 else ""}')
        out[f'refiner.{key}'] = state[matches[0]].float().clone()
    return out


def load_original(path):
    """Read the original file (weights_only) and return its model state dict."""
    obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get('model_state_dict'), dict):
        return obj['model_state_dict']
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise KeyError(f'{path} has no model_state_dict (top-level keys: {keys}).')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='original checkpoints/last.pt')
    parser.add_argument('dst', help='ovseg checkpoint to write')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    if os.path.exists(args.dst) and not args.force:
        print(f'{args.dst} exists; pass --force to overwrite it.', file=sys.stderr)
        return 1
    state = convert(load_original(args.src))
    torch.save({'state_dict': state, 'meta': {'converted_from': os.path.basename(args.src),
                                              'method': 'clip_dinoiser'}}, args.dst)
    print(f'wrote {args.dst}: {len(state)} tensors ({", ".join(sorted(state))})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
