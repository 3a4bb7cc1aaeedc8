"""Convert an original AnomalyCLIP checkpoint (``epoch_N.pth`` of zqhang/AnomalyCLIP) into an ovseg checkpoint.

The original file holds ``{'prompt_learner': {...}}``: the learned ``ctx_pos`` / ``ctx_neg`` (1, 1, n_ctx, D),
``compound_prompts_text.{i}`` (t_n_ctx, D), the never-used ``compound_prompt_projections.*`` and buffers
derived from the frozen CLIP (``token_prefix_*``, ``token_suffix_*``, ``tokenized_prompts_*``). The output
holds ``{'state_dict': {'head.prompt_learner.ctx_pos', ...}, 'meta': {...}}`` (float32; the original's
GPU runs may store fp16 contexts) and loads with ``torch.load(weights_only=True)``;
``tools/test.py configs/anomaly/anomalyclip_vit-l14-336_mvtec.py OUT`` reads it (the CLIP weights come
from open_clip's ``openai`` tag).

Usage::

    python tools/model_converters/anomalyclip_to_ovseg.py checkpoints/9_12_4_multiscale/epoch_15.pth \
        anomalyclip_visa_ovseg.pth
"""
import argparse
import os
import re
import sys

import torch

LEARNED = re.compile(r'^(ctx_pos|ctx_neg|compound_prompts_text\.\d+)$')
DROPPED = re.compile(r'^(compound_prompt_projections\.|token_prefix_|token_suffix_|tokenized_prompts_)')


def convert(state):
    """Original ``prompt_learner`` state dict -> ovseg state dict (``head.prompt_learner.*``, float32).

    Raises:
        KeyError: ``ctx_pos`` / ``ctx_neg`` missing, or keys this converter does not know.
    """
    unknown = sorted(k for k in state if not LEARNED.match(k) and not DROPPED.match(k))
    missing = [k for k in ('ctx_pos', 'ctx_neg') if k not in state]
    if unknown or missing:
        raise KeyError(f'Not an AnomalyCLIP prompt learner: missing {missing}, unknown keys {unknown[:20]}')
    deep = sorted((k for k in state if k.startswith('compound_prompts_text.')), key=lambda k: int(k.split('.')[-1]))
    if [int(k.split('.')[-1]) for k in deep] != list(range(len(deep))):
        raise KeyError(f'compound_prompts_text entries are not numbered 0..n-1: {deep}')
    return {f'head.prompt_learner.{k}': state[k].float().clone() for k in ('ctx_pos', 'ctx_neg', *deep)}


def load_original(path):
    """Read the original file (weights_only) and return its prompt-learner state dict."""
    obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get('prompt_learner'), dict):
        return obj['prompt_learner']
    if isinstance(obj, dict) and 'ctx_pos' in obj:
        return obj
    keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise KeyError(f'{path} has no prompt_learner (top-level keys: {keys}).')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='original AnomalyCLIP epoch_N.pth')
    parser.add_argument('dst', help='ovseg checkpoint to write')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    args = parser.parse_args(argv)
    if os.path.exists(args.dst) and not args.force:
        print(f'{args.dst} exists; pass --force to overwrite it.', file=sys.stderr)
        return 1
    state = convert(load_original(args.src))
    depth = sum(k.startswith('head.prompt_learner.compound_prompts_text.') for k in state) + 1
    n_ctx = state['head.prompt_learner.ctx_pos'].shape[-2]
    torch.save({'state_dict': state, 'meta': {'converted_from': os.path.basename(args.src), 'method': 'anomalyclip',
                                              'n_ctx': int(n_ctx), 'text_depth': int(depth)}}, args.dst)
    print(f'wrote {args.dst}: {len(state)} tensors (n_ctx {n_ctx}, text_depth {depth})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
