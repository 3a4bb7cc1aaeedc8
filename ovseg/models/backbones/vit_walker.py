"""The one loop over a ViT tower's blocks: embed, walk the blocks with per-block strategies, tap tokens.

In the spirit of timm's ``forward_intermediates``, :func:`walk` embeds the image once (positional
embedding resized once), runs every block through its attention strategy (:mod:`.attention_strategies`,
the standard one where none is chosen) and returns what the caller asked for. It is the only code in
ovseg that iterates over an image tower's blocks; backbones, anomaly heads, FC-CLIP's pooling and the
analysis tools call it.

Taps (``taps=``) name what to return, with block indices counted from 0 (negative from the end):

- ``'embed'``: the tokens entering the first block (after the tower's pre-norm);
- ``'blocks.i'`` (or open_clip's ``'resblocks.i'``): the output of block i;
- ``'blocks.i.ln_1'`` / ``'.ln_2'`` (timm spelling ``'.norm1'`` / ``'.norm2'``): the normalised input of
  the attention / feed-forward of block i; ``'.mlp'``: the feed-forward output before its residual;
  ``'.q'``, ``'.k'``, ``'.v'``: the block's projections (B, N, D), heads concatenated in head order;
- ``'last_keys'``: MaskCLIP's keys of the last block, ``out_proj(k(ln_1 x))`` for every token (the output
  projection *with* its bias applied to the keys, as MaskCLIP's ``vit.py`` does), for key smoothing.

Strategies may record more (attention maps, streams such as the value-value path) through the context.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from ovseg.registry import MODELS

_SITES = {'ln_1': 'ln_1', 'norm1': 'ln_1', 'ln_2': 'ln_2', 'norm2': 'ln_2', 'mlp': 'mlp', 'q': 'q', 'k': 'k',
          'v': 'v', 'attn_residual': 'attn_residual'}


@dataclass
class WalkContext:
    """State of one walk, handed to every strategy (see :mod:`.attention_strategies` for the contract).

    Attributes:
        grid (tuple[int, int]): (h, w) of the patch tokens; a strategy that changes the token set updates it.
        num_prefix (int): prefix tokens (class, registers) before the patches.
        depth (int): number of blocks.
        external (dict): inputs from the caller (affinities, masks, another network's features).
        streams (dict): extra token streams carried from block to block (e.g. the value-value path).
        rope (Tensor, optional): rotary embedding of towers that use one.
        records (dict): what strategies and sites recorded for the caller, by name.
        index (int): 0-based index of the block being run.
    """

    grid: tuple
    num_prefix: int
    depth: int
    external: dict = field(default_factory=dict)
    streams: dict = field(default_factory=dict)
    rope: Optional[torch.Tensor] = None
    records: dict = field(default_factory=dict)
    index: int = 0
    sites: Dict[int, set] = field(default_factory=dict)
    wanted: set = field(default_factory=set)
    layout: dict = field(default_factory=dict)

    def require(self, key, who):
        """An external input, or a KeyError saying which strategy needs it."""
        if key not in self.external:
            raise KeyError(f'{who} needs the external input {key!r} (pass external={{{key!r}: ...}} to the '
                           f'backbone call); got {sorted(self.external)}.')
        return self.external[key]

    def wants(self, name):
        """Whether the caller asked for the record ``name`` (e.g. 'attn.3' for block 3's attention)."""
        return name in self.wanted

    def keep(self, name, value):
        self.records[name] = value
        self.layout[name] = (tuple(self.grid), self.num_prefix)

    def wants_site(self, index, site=None):
        sites = self.sites.get(index, ())
        return bool(sites) if site is None else site in sites

    def keep_site(self, index, site, value):
        """Record a site of block ``index`` ('ln_1', 'ln_2', 'mlp', 'q', 'k', 'v') when it was asked for."""
        if index is not None and site in self.sites.get(index, ()):
            self.keep(f'blocks.{index}.{site}', value)


@dataclass
class WalkResult:
    """What :func:`walk` returns.

    Attributes:
        tokens (Tensor): (B, N, D) after the last block run (before the tower's final norm).
        grid (tuple[int, int]): patch grid of ``tokens`` (strategies may change it).
        num_prefix (int): prefix tokens in ``tokens``.
        taps (dict[str, Tensor]): requested taps by the name the caller used, each (B, N, D).
        records (dict): everything recorded (taps included, canonical names).
        streams (dict): extra streams after the last block.
        stream_taps (dict[int, dict]): streams after each tapped block (by block index).
        plain (Tensor, optional): the tokens through standard blocks only (``with_plain``).
        tap_layout (dict[str, tuple]): (grid, num_prefix) of each tap's tokens.
    """

    tokens: torch.Tensor
    grid: tuple
    num_prefix: int
    taps: dict
    records: dict
    streams: dict
    stream_taps: dict
    plain: Optional[torch.Tensor] = None
    tap_layout: dict = field(default_factory=dict)


def _index(text, depth, name):
    try:
        index = int(text)
    except ValueError:
        raise KeyError(f'Tap {name!r}: block index {text!r} is not an integer') from None
    if not -depth <= index < depth:
        raise KeyError(f'Tap {name!r}: block {index} outside a tower of {depth} blocks')
    return index % depth


def parse_tap(name, depth):
    """'resblocks.-3.ln_2' -> (block index, site or None); 'last_keys' -> (depth - 1, 'last_keys')."""
    if name == 'last_keys':
        return depth - 1, 'last_keys'
    if name == 'embed':
        return -1, None
    parts = name.split('.')
    if parts[0] not in ('blocks', 'resblocks') or len(parts) not in (2, 3):
        raise KeyError(f'Unknown tap {name!r}: use embed, blocks.i (block output), blocks.i.ln_1 / ln_2 / mlp / '
                       f"q / k / v / attn_residual, or 'last_keys' (resblocks.* is accepted as well)")
    index = _index(parts[1], depth, name)
    if len(parts) == 2:
        return index, None
    if parts[2] not in _SITES:
        raise KeyError(f'Unknown site {parts[2]!r} in tap {name!r}; sites: {sorted(_SITES)}')
    return index, _SITES[parts[2]]


def _block_set(spec, depth):
    blocks = spec.get('blocks', -1)
    if blocks == 'all':
        return set(range(depth))
    if isinstance(blocks, dict):
        start, stop = blocks.get('start', 0), blocks.get('stop', depth)
        return set(range(depth)[slice(start, stop)])
    blocks = [blocks] if isinstance(blocks, int) else list(blocks)
    return {_index(b, depth, f'blocks={blocks}') for b in blocks}


def build_strategies(specs, depth):
    """Strategy configs -> {block index: strategy}.

    Args:
        specs (dict | Sequence[dict]): each a strategy config with ``blocks``: an int, a list of ints
            (negative from the end), 'all', or ``dict(start=i, stop=j)`` (a Python slice of the blocks).
            Default ``blocks=-1`` (the last block). Strategy objects (already built) are accepted in
            ``dict(strategy=obj, blocks=...)``. A block named twice is an error.
        depth (int): number of blocks.
    """
    if specs is None:
        return {}
    specs = [specs] if isinstance(specs, dict) else list(specs)
    out = {}
    for spec in specs:
        spec = dict(spec)
        indices = _block_set(spec, depth)
        spec.pop('blocks', None)
        strategy = spec.pop('strategy') if 'strategy' in spec else MODELS.build(spec)
        twice = sorted(indices & set(out))
        if twice:
            raise ValueError(f'Blocks {twice} have two attention strategies; give each block one.')
        out.update({i: strategy for i in indices})
    return out


def _plan_taps(taps, depth):
    sites, outputs, canonical = {}, {}, {}
    for name in taps:
        index, site = parse_tap(name, depth)
        if site is None:
            outputs.setdefault(index, []).append(name)
        elif site == 'last_keys':
            canonical[name] = 'last_keys'
        else:
            sites.setdefault(index, set()).add(site)
            canonical[name] = f'blocks.{index}.{site}'
    return sites, outputs, canonical


def walk(tower, images=None, *, tokens=None, normed=False, grid=None, strategies=None, taps=(), external=None,
         stream_taps=False, with_plain=False, pos_mode=None, record=()):
    """Embed and run a ViT tower.

    Args:
        tower: a tower adapter from :func:`.vit_towers.vit_tower` (or a vision module it accepts).
        images (Tensor, optional): (B, 3, H, W) normalised images; H, W are floored to the patch size.
        tokens (Tensor, optional): (B, N, D) tokens after the positional embedding instead of images (e.g.
            WinCLIP's windows); ``normed=True`` when they already went through the tower's pre-norm.
        grid (tuple[int, int], optional): patch grid of ``tokens`` (default: none, prefix only).
        strategies (dict[int, strategy] | specs): per-block strategies (:func:`build_strategies`).
        taps (Sequence[str]): what to return (module docstring).
        external (dict, optional): inputs for strategies that take them (affinities, masks).
        stream_taps (bool): also snapshot extra streams after tapped blocks. Default False.
        with_plain (bool): keep the tokens through standard blocks only, for the pooled embedding, when
            a strategy changes a block. Default False.
        pos_mode (str, optional): positional-embedding resize (:mod:`.pos_embed`); tower default if None.
        record (Sequence[str]): names strategies may record (e.g. 'attn.11').

    Returns:
        WalkResult
    """
    from ovseg.models.backbones.vit_towers import vit_tower
    tower = vit_tower(tower)
    depth = len(tower.blocks)
    if not isinstance(strategies, dict) or any(not isinstance(k, int) for k in strategies):
        strategies = build_strategies(strategies, depth)
    rope = None
    if tokens is None:
        if images is None:
            raise ValueError('walk() needs images or tokens')
        tokens, grid, rope = tower.embed(images, pos_mode)
    if not normed:
        tokens = tower.norm_pre(tokens)
    sites, outputs, canonical = _plan_taps(taps, depth)
    ctx = WalkContext(grid=tuple(grid or (0, 0)), num_prefix=tower.num_prefix, depth=depth,
                      external=dict(external or {}), rope=rope, sites=sites, wanted=set(record))
    x, plain, snapshots, result_taps, layout = tokens, None, {}, {}, {}
    plain_ctx = WalkContext(grid=ctx.grid, num_prefix=ctx.num_prefix, depth=depth, rope=rope)
    for name in outputs.get(-1, ()):
        result_taps[name], layout[name] = x, (ctx.grid, ctx.num_prefix)
    for index, view in enumerate(tower.blocks):
        ctx.index = index
        if index == depth - 1 and 'last_keys' in canonical.values():
            ctx.keep('last_keys', view.project(view.linear_part(view.norm1(x), 'k')))
        strategy = strategies.get(index)
        if with_plain and plain is None and not getattr(strategy, 'is_standard', strategy is None):
            plain = x  # the pooled embedding needs the standard blocks from here on
        if plain is not None:  # no taps on this stream; rotary embeddings still apply
            plain = view.forward(plain, plain_ctx, index=index)
        x = strategy(view, x, ctx) if strategy is not None else view.forward(x, ctx, index=index)
        for name in outputs.get(index, ()):
            result_taps[name], layout[name] = x, (ctx.grid, ctx.num_prefix)
        if stream_taps and index in outputs:
            snapshots[index] = dict(ctx.streams)
    for name, key in canonical.items():
        if key not in ctx.records:
            raise KeyError(f'Tap {name!r} produced no output: the strategy of that block does not compute it '
                           f'(e.g. no feed-forward, or no q/k/v).')
        result_taps[name], layout[name] = ctx.records[key], ctx.layout[key]
    return WalkResult(tokens=x, grid=ctx.grid, num_prefix=ctx.num_prefix, taps=result_taps, records=ctx.records,
                      streams=ctx.streams, stream_taps=snapshots,
                      plain=(x if plain is None else plain) if with_plain else None, tap_layout=layout)
