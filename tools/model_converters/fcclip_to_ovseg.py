"""Convert a released FC-CLIP checkpoint (detectron2 parameter names) into ovseg's ``FCCLIPSegmentor`` layout.

The original file (e.g. ``fcclip_cocopan.pth``) holds ``{'model': state_dict, ...}`` with names such as
``backbone.clip_model.visual.trunk.stages.0...``,
``sem_seg_head.pixel_decoder.transformer.encoder.layers.0...``,
``sem_seg_head.predictor.transformer_cross_attention_layers.0...`` and ``void_embedding.weight``. The output
holds ``{'state_dict': {...}, 'meta': {...}}`` and loads with ``torch.load(weights_only=True)``;
``tools/test.py configs/fcclip_ade.py OUT`` reads it. Every key that no rule maps and every key the model
needs but the file lacks is reported by name (exit code 2); known constants (``criterion.empty_weight``,
``pixel_mean``, ``pixel_std``) are dropped. FrozenSeg's and MAFT+'s converters extend these rules.

Usage::

    python tools/model_converters/fcclip_to_ovseg.py fcclip_cocopan.pth fcclip_cocopan_ovseg.pth
"""
import argparse
import os
import re
import sys

import torch

_PD = r'sem_seg_head\.pixel_decoder\.'
_PR = r'sem_seg_head\.predictor\.'
# (pattern on the original name, replacement) - first match wins; names are full-matched;
# '{N-1}' turns detectron2's 1-based adapter_N / layer_N into 0-based list indices.
RULES = (
    (r'backbone\.clip_model\.(.+)', r'backbone.clip.\1'),
    (_PD + r'transformer\.level_embed', r'pixel_decoder.level_embed'),
    (_PD + r'transformer\.encoder\.layers\.(\d+)\.(.+)', r'pixel_decoder.encoder_layers.\1.\2'),
    (_PD + r'input_proj\.(\d+)\.([01])\.(weight|bias)', r'pixel_decoder.input_proj.\1.\2.\3'),
    (_PD + r'mask_features\.(weight|bias)', r'pixel_decoder.mask_features.\1'),
    (_PD + r'adapter_(\d+)\.norm\.(weight|bias)', r'pixel_decoder.lateral_convs.{\1-1}.norm.\2'),
    (_PD + r'adapter_(\d+)\.(weight)', r'pixel_decoder.lateral_convs.{\1-1}.conv.\2'),
    (_PD + r'layer_(\d+)\.norm\.(weight|bias)', r'pixel_decoder.output_convs.{\1-1}.norm.\2'),
    (_PD + r'layer_(\d+)\.(weight)', r'pixel_decoder.output_convs.{\1-1}.conv.\2'),
    (_PR + r'transformer_self_attention_layers\.(\d+)\.self_attn\.(.+)',
     r'transformer_decoder.self_attn_layers.\1.attn.\2'),
    (_PR + r'transformer_self_attention_layers\.(\d+)\.norm\.(.+)',
     r'transformer_decoder.self_attn_layers.\1.norm.\2'),
    (_PR + r'transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)',
     r'transformer_decoder.cross_attn_layers.\1.attn.\2'),
    (_PR + r'transformer_cross_attention_layers\.(\d+)\.norm\.(.+)',
     r'transformer_decoder.cross_attn_layers.\1.norm.\2'),
    (_PR + r'transformer_ffn_layers\.(\d+)\.(linear1|linear2|norm)\.(.+)',
     r'transformer_decoder.ffn_layers.\1.\2.\3'),
    (_PR + r'_mask_pooling_proj\.([01])\.(.+)', r'transformer_decoder.class_head.pool_proj.\1.\2'),
    (_PR + r'class_embed\.layers\.(\d+)\.(.+)', r'transformer_decoder.class_head.class_embed.layers.\1.\2'),
    (_PR + r'logit_scale', r'transformer_decoder.class_head.logit_scale'),
    (_PR + r'(decoder_norm|query_feat|query_embed|level_embed|mask_embed|input_proj)\.(.+)',
     r'transformer_decoder.\1.\2'),
    (r'void_embedding\.weight', r'void_embedding.weight'),
)
# Config constants and non-persistent buffers some checkpoints carry; not parameters of the ovseg model.
DROPPED = ('criterion.empty_weight', 'pixel_mean', 'pixel_std')


# ovseg keys every converted FC-CLIP checkpoint has (a released file lacking one is incomplete).
REQUIRED = (
    r'backbone\.clip\.visual\.trunk\.stem\..+', r'backbone\.clip\.logit_scale',
    r'pixel_decoder\.level_embed', r'pixel_decoder\.encoder_layers\.0\..+', r'pixel_decoder\.mask_features\.weight',
    r'transformer_decoder\.query_feat\.weight', r'transformer_decoder\.query_embed\.weight',
    r'transformer_decoder\.decoder_norm\.weight', r'transformer_decoder\.class_head\.logit_scale',
    r'transformer_decoder\.cross_attn_layers\.0\..+', r'void_embedding\.weight',
)


def rename(name, rules):
    """Original name -> ovseg name by the first rule that full-matches it, or None."""
    for pattern, repl in rules:
        match = re.fullmatch(pattern, name)
        if match:
            new = match.expand(repl)
            return re.sub(r'\{(\d+)-1\}', lambda m: str(int(m.group(1)) - 1), new)
    return None


def _rename(name):
    return rename(name, RULES)


def convert_state_dict(state, rules, dropped=()):
    """Rename a state dict with ``rules``; returns (renamed dict, sorted original keys no rule matched).
    Keys in ``dropped`` are left out silently."""
    out, unmatched = {}, []
    for name, value in state.items():
        if name in dropped:
            continue
        new = rename(name, rules)
        if new is None:
            unmatched.append(name)
        else:
            out[new] = value
    return out, sorted(unmatched)


def convert_fcclip_state_dict(state):
    """Rename a FC-CLIP state dict to ovseg's names.

    Args:
        state (dict[str, Tensor]): original (detectron2) state dict.

    Returns:
        tuple[dict[str, Tensor], list[str]]: the renamed state dict and the original keys no rule
        matched (sorted; known constants are dropped silently).
    """
    return convert_state_dict(state, RULES, DROPPED)


# layer stacks whose members all hold the same tensors (checked for completeness)
FAMILIES = (r'pixel_decoder\.encoder_layers', r'transformer_decoder\.(?:cross_attn|self_attn|ffn)_layers')


def missing_keys(state, required, families=FAMILIES):
    """ovseg keys a converted checkpoint lacks, by name.

    Two checks: every pattern of ``required`` matches some key (else the pattern is reported), and every
    layer stack named by ``families`` is complete: if ``<stack>.<i>.rest`` exists for one layer ``i``, it
    exists for every layer of the stack (else the absent ``<stack>.<j>.rest`` is reported).
    """
    missing = [p.replace('\\', '') for p in required if not any(re.fullmatch(p, k) for k in state)]
    members = {}
    for key in state:
        for family in families:
            match = re.match(rf'({family})\.(\d+)\.(.+)', key)
            if match:
                members.setdefault(match.group(1), {}).setdefault(match.group(2), set()).add(match.group(3))
    for head, layers in members.items():
        every = set().union(*layers.values())
        for index, rests in layers.items():
            missing += [f'{head}.{index}.{rest}' for rest in sorted(every - rests)]
    return sorted(set(missing))


def load_original(path):
    """Read a released checkpoint with ``weights_only=True``; return its model state dict."""
    obj = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        obj = obj['model']
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    keys = sorted(obj)[:20] if isinstance(obj, dict) else type(obj).__name__
    raise KeyError(f'{path} holds no model state dict (top-level keys: {keys}).')


def run(argv, description, convert, required, method, families=FAMILIES):
    """Command line shared by the FC-CLIP family's converters.

    ``convert(state) -> (renamed, unmatched)``. Exit codes: 0 written, 1 destination exists, 2 unknown
    (unmatched) or missing keys, listed by name (``--allow-unmatched`` writes anyway).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='released checkpoint (detectron2 names)')
    parser.add_argument('dst', help='ovseg checkpoint to write')
    parser.add_argument('--force', action='store_true', help='overwrite dst if it exists')
    parser.add_argument('--allow-unmatched', action='store_true',
                        help='write even if some keys are unknown or missing')
    args = parser.parse_args(argv)
    if os.path.exists(args.dst) and not args.force:
        print(f'{args.dst} exists; pass --force to overwrite it.', file=sys.stderr)
        return 1
    state, unmatched = convert(load_original(args.src))
    missing = missing_keys(state, required, families)
    if unmatched:
        print(f'{len(unmatched)} keys match no rule: {", ".join(unmatched)}', file=sys.stderr)
    if missing:
        print(f'{len(missing)} keys are missing: {", ".join(missing)}', file=sys.stderr)
    if (unmatched or missing) and not args.allow_unmatched:
        return 2
    meta = {'converted_from': os.path.basename(args.src), 'method': method}
    torch.save({'state_dict': state, 'meta': meta}, args.dst)
    print(f'wrote {args.dst}: {len(state)} tensors')
    return 0


def main(argv=None):
    return run(argv, __doc__.split('\n')[0], convert_fcclip_state_dict, REQUIRED, 'fcclip')


if __name__ == '__main__':
    sys.exit(main())
