"""Convert a released AdaptCLIP checkpoint (gaobb/AdaptCLIP ``epoch_N.pth``) into an ovseg checkpoint.

The original file holds ``{'textual_learner': ..., 'visual_learner': ..., 'pq_learner': ...}`` (the three
adapters' state dicts, the keys its ``test.py`` reads). They map to ``head.textual_adapter.*``,
``head.visual_adapter.*`` (``local_adater`` renamed ``local_adapter``) and ``head.pq_adapter.*``. The
prompt-query adapter's ``local_adapter`` / ``global_adapter`` are lists of one module repeated per tapped
layer, so keys ``.1.`` to ``.3.`` repeat ``.0.``: they are checked equal and dropped. The textual adapter's
buffers (``token_prefix_*``, ``token_suffix_*``, ``tokenized_prompts_*``) are derived from the frozen CLIP
and recomputed by ovseg. Any other key is an error that names it (exit code 2). The output loads with
``torch.load(weights_only=True)``; the CLIP weights come from open_clip's ``openai`` tag.

Usage::

    python tools/model_converters/adaptclip_to_ovseg.py adaptclip_checkpoints/train_on_visa/epoch_15.pth \
        adaptclip_visa_ovseg.pth
    python tools/test.py configs/anomaly/adaptclip_vit-l14-336_1shot_mvtec.py adaptclip_visa_ovseg.pth

Exit codes: 0 written; 1 the output exists (without ``--force``); 2 not an AdaptCLIP checkpoint.
"""
import argparse
import os
import re
import sys

import torch

ADAPTERS = ('textual_learner', 'visual_learner', 'pq_learner')
RULES = (  # (original key pattern, ovseg key template); first match wins
    (r'^textual_learner\.(ctx_pos|ctx_neg)$', r'head.textual_adapter.\1'),
    (r'^visual_learner\.local_adater\.(fc\..+)$', r'head.visual_adapter.local_adapter.\1'),
    (r'^visual_learner\.global_adapter\.(fc\..+)$', r'head.visual_adapter.global_adapter.\1'),
    (r'^pq_learner\.(sharebn\.\d+\..+)$', r'head.pq_adapter.\1'),
    (r'^pq_learner\.(local_adapter|global_adapter)\.0\.(.+)$', r'head.pq_adapter.\1.\2'),
)
DERIVED = re.compile(r'^textual_learner\.(token_prefix_|token_suffix_|tokenized_prompts_)')
SHARED = re.compile(r'^pq_learner\.(local_adapter|global_adapter)\.([1-9]\d*)\.(.+)$')


class NotAdaptCLIP(KeyError):
    """The file is not an AdaptCLIP adapter checkpoint; the message names the offending keys."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


def flatten(checkpoint):
    """``{'textual_learner': sd, ...}`` -> ``{'textual_learner.<key>': tensor, ...}``."""
    missing = [name for name in ADAPTERS if not isinstance(checkpoint.get(name), dict)]
    if missing:
        raise NotAdaptCLIP(f'not an AdaptCLIP checkpoint: no {missing} (top-level keys {sorted(checkpoint)})')
    extra = sorted(set(checkpoint) - set(ADAPTERS))
    if extra:
        raise NotAdaptCLIP(f'unknown top-level keys {extra} (expected {list(ADAPTERS)})')
    return {f'{name}.{k}': v for name in ADAPTERS for k, v in checkpoint[name].items()}


def convert(checkpoint):
    """Original checkpoint dict -> ovseg state dict (float tensors as float32).

    Raises:
        NotAdaptCLIP: missing adapters, unknown keys (named) or repeated modules that differ.
    """
    flat = flatten(checkpoint)
    state, unknown, shared = {}, [], []
    for key, value in flat.items():
        if DERIVED.match(key):
            continue
        if SHARED.match(key):
            shared.append(key)
            continue
        for pattern, template in RULES:
            if re.match(pattern, key):
                state[re.sub(pattern, template, key)] = value.float() if value.is_floating_point() else value
                break
        else:
            unknown.append(key)
    if unknown:
        raise NotAdaptCLIP(f'unknown keys {unknown[:20]}{" ..." if len(unknown) > 20 else ""} '
                           f'({len(unknown)} in all)')
    for key in shared:
        first = SHARED.sub(r'pq_learner.\1.0.\3', key)
        if first not in flat or not torch.equal(flat[first], flat[key]):
            raise NotAdaptCLIP(f'{key} differs from {first}: the prompt-query heads are not shared')
    for required in ('head.textual_adapter.ctx_pos', 'head.textual_adapter.ctx_neg'):
        if required not in state:
            raise NotAdaptCLIP(f'not an AdaptCLIP checkpoint: {required} missing')
    return state


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='original AdaptCLIP epoch_N.pth')
    parser.add_argument('dst', help='ovseg checkpoint to write')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    if os.path.exists(args.dst) and not args.force:
        print(f'{args.dst} exists; pass --force to overwrite it.', file=sys.stderr)
        return 1
    obj = torch.load(args.src, map_location='cpu', weights_only=True)
    try:
        state = convert(obj if isinstance(obj, dict) else {})
    except NotAdaptCLIP as err:
        print(f'error: {args.src}: {err}', file=sys.stderr)
        return 2
    n_ctx = state['head.textual_adapter.ctx_pos'].shape[-2]
    layers = sum(k.startswith('head.pq_adapter.sharebn.') and k.endswith('.weight') for k in state)
    torch.save({'state_dict': state, 'meta': {'converted_from': os.path.basename(args.src), 'method': 'adaptclip',
                                              'n_ctx': int(n_ctx), 'tapped_layers': int(layers)}}, args.dst)
    print(f'wrote {args.dst}: {len(state)} tensors (n_ctx {n_ctx}, {layers} tapped layers)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
