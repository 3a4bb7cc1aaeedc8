"""The SCLIP / ClearCLIP / NACLIP parity models, built from a fixture folder's manifest.

The three fixture formats (``$OVSEG_PARITY_DIR/{sclip,clearclip,naclip}``) share one model (OpenAI-format
ViT-B/16 geometry with few layers, QuickGELU, deterministic weights) and one pipeline; they differ in the
last block's attention, the class-file separator, the crop padding and the post-processing. This module
builds the ovseg segmentor of a case and reads the walker's intermediates of one window, so the three
parity tests compare the same quantities.
"""
import numpy as np
import torch
from mmseg.structures import SegDataSample

from ovseg.models.backbones.pos_embed import resize_pos_embed
from ovseg.models.backbones.vit_tokens import tokens_with_position
from ovseg.models.backbones.vit_towers import tower_depth, vit_tower
from ovseg.models.backbones.vit_walker import walk
from ovseg.registry import MODELS
from ovseg.testing.parity import det_state_dict_for
from ovseg.text import Vocabulary

# folder -> (last-block strategy, class-file separator of get_cls_idx, crop padding, renormalise probabilities)
METHODS = {
    'sclip': (dict(type='CorrelativeAttention'), ', ', 'none', False),
    'clearclip': (dict(type='QueryQueryAttention'), ',', 'symmetric', False),
    'naclip': (dict(type='NeighbourhoodAttention'), ', ', 'none', True),
}


def open_clip_arch(model):
    """The manifest's ``model`` section -> an inline open_clip config (QuickGELU, as the OpenAI class)."""
    v, t = model['vision'], model['text']
    return dict(embed_dim=model['embed_dim'], quick_gelu=True,
                vision_cfg=dict(image_size=v['image_resolution'], layers=v['layers'], width=v['width'],
                                head_width=v['head_dim'], patch_size=v['patch_size'], mlp_ratio=v['mlp_ratio']),
                text_cfg=dict(context_length=t['context_length'], vocab_size=t['vocab_size'], width=t['width'],
                              heads=t['heads'], layers=t['layers']))


def hyper_parameters(manifest, case):
    """Class defaults ('all') overridden by the case's config."""
    return {**manifest['hyper_parameters'].get('all', {}), **manifest['cases'][case]['hyper_parameters']}


def build_segmentor(manifest, folder, root, state=None):
    """The ``OVQuerySegmentor`` of a fixture folder with its deterministic weights (eval mode).

    ``state``: the weights when the caller already drew them (the three folders share one model).
    """
    attention, _, crop_pad, renormalize = METHODS[folder]
    all_hp = manifest['hyper_parameters'].get('all', {})
    if folder == 'naclip':
        attention = dict(attention, gaussian_std=all_hp['gaussian_std'])
    norm = manifest['preprocessing']['normalize']
    cfg = dict(type='OVQuerySegmentor',
               data_preprocessor=dict(type='SegDataPreProcessor', mean=norm['mean'], std=norm['std'],
                                      bgr_to_rgb=True),
               backbone=dict(type='OpenCLIPBackbone', arch=open_clip_arch(manifest['model']),
                             attention=[dict(attention, blocks=-1)], pos_mode='bicubic_scale'),
               text_classifier=dict(type='OVTextClassifier', templates=manifest['text']['templates'],
                                    cache_dir=None),
               vocabulary=['x'], crop_pad=crop_pad, renormalize=renormalize)
    model = MODELS.build(cfg)
    clip = model.backbone.clip
    state = det_state_dict_for(clip, manifest['seed'], root=root) if state is None else state
    shapes = {k: list(v.shape) for k, v in state.items()}
    if shapes != manifest['weights']['shapes']:
        raise AssertionError(f'model parameters differ from the fixture weights: '
                             f'{sorted(set(shapes) ^ set(manifest["weights"]["shapes"]))[:8]}')
    clip.load_state_dict(state, strict=False)
    return model.eval()


def configure(model, manifest, folder, case):
    """Set the case's vocabulary and hyper-parameters on a segmentor from :func:`build_segmentor`."""
    hp = hyper_parameters(manifest, case)
    separator = METHODS[folder][1]
    lines = manifest['cases'][case]['class_file_lines']
    model.set_vocabulary(Vocabulary(tuple(tuple(line.split(separator)) for line in lines), verbatim=True))
    model.logit_scale, model.prob_thd = float(hp.get('logit_scale', 40)), float(hp.get('prob_thd', 0.0))
    model.area_thd = hp.get('area_thd')
    crop = hp.get('slide_crop', 224)
    model.test_cfg = dict(mode='slide' if crop else 'whole', crop_size=crop, stride=hp.get('slide_stride', crop),
                          window_batch=4)
    steps = hp.get('pamr_steps', 0)
    model.postprocessors = torch.nn.ModuleList(
        [MODELS.build(dict(type='PAMR', num_iter=steps, dilations=hp['pamr_stride']))] if steps else [])
    return hp


def segmentor_input(image_uint8, data_preprocessor):
    """(H, W, 3) RGB uint8 -> the preprocessed (1, 3, H, W) input, as mmseg loads and normalises it (BGR)."""
    image = torch.from_numpy(np.ascontiguousarray(image_uint8[..., ::-1])).permute(2, 0, 1)
    sample = SegDataSample(metainfo=dict(ori_shape=tuple(image.shape[-2:]), img_shape=tuple(image.shape[-2:])))
    return data_preprocessor(dict(inputs=[image], data_samples=[sample]), False)['inputs']


@torch.no_grad()
def window_intermediates(model, crop):
    """Walker intermediates of one (1, 3, h, w) window, token arrays (N, D) with the class token first.

    Returns:
        dict: ``pos_embed``, ``ln_pre_in``, ``ln_pre_out``, ``block{i}_out`` (blocks before the last),
        ``last_ln1``, ``q``, ``k``, ``v``, ``attn`` (heads, N, N), ``attn_logits`` / ``attn_parts`` /
        ``omega`` when the strategy records them, ``resid1`` (after the attention residual, or the
        attention output without residual), ``mlp`` (when the block has its FFN), ``last_out``,
        ``ln_post``, ``dense_feats`` (N, C) after ``proj``, ``grid``.
    """
    visual = model.backbone.clip.visual
    tower = vit_tower(visual)
    last = tower_depth(tower) - 1
    tokens, grid = tokens_with_position(visual, crop, model.backbone.pos_mode)
    sites = ('ln_1', 'q', 'k', 'v', 'attn_residual') + (('mlp',) if model.backbone.strategies[last].ffn else ())
    taps = ['embed'] + [f'blocks.{i}' for i in range(last + 1)] + [f'blocks.{last}.{s}' for s in sites]
    record = [f'{name}.{last}' for name in ('attn', 'attn_logits', 'attn_parts', 'omega')]
    result = walk(tower, tokens=tokens, grid=grid, strategies=model.backbone.strategies, taps=taps, record=record)
    taps, rec = result.taps, result.records
    out = dict(grid=grid, ln_pre_in=tokens[0], ln_pre_out=taps['embed'][0], last_ln1=taps[f'blocks.{last}.ln_1'][0],
               q=taps[f'blocks.{last}.q'][0], k=taps[f'blocks.{last}.k'][0], v=taps[f'blocks.{last}.v'][0],
               resid1=taps[f'blocks.{last}.attn_residual'][0], last_out=result.tokens[0], attn=rec[f'attn.{last}'][0],
               pos_embed=resize_pos_embed(visual.positional_embedding, grid, model.backbone.pos_mode),
               ln_post=visual.ln_post(result.tokens)[0], dense_feats=tower.head_tokens(result.tokens)[0])
    out.update({f'block{i}_out': taps[f'blocks.{i}'][0] for i in range(last)})
    if f'blocks.{last}.mlp' in taps:
        out['mlp'] = taps[f'blocks.{last}.mlp'][0]
    for name in ('attn_logits', 'omega'):
        if f'{name}.{last}' in rec:
            out[name] = rec[f'{name}.{last}'] if name == 'omega' else rec[f'{name}.{last}'][0]
    if f'attn_parts.{last}' in rec:
        out['attn_parts'] = tuple(p[0] for p in rec[f'attn_parts.{last}'])
    return out
