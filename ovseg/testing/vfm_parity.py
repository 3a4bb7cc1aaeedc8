"""The ProxyCLIP and CorrCLIP parity models, built from a fixture folder's manifest, and their intermediates.

Both fixture formats (``$OVSEG_PARITY_DIR/proxyclip``, ``$OVSEG_PARITY_DIR/corrclip``) draw deterministic
weights for CLIP (an inline open_clip config) and for the foundation model (the original DINO / DINOv2
code's own key names, converted to timm's by :func:`ovseg.models.backbones.vfm_loader.convert_vfm_state_dict`).
The helpers build the ovseg segmentor of a case and read the walker's intermediates of one window; the
prediction rule is checked on a fixture's own logits (:func:`assert_prediction_rule_on_fixture_logits`).
"""
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from mmseg.structures import SegDataSample

from ovseg.models.backbones.pos_embed import resize_pos_embed
from ovseg.models.backbones.vit_walker import walk
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.registry import MODELS
from ovseg.testing.parity import det_state_dict_for, load_detweights, parity_dir
from ovseg.testing.tolerance import (assert_equal_away_from_ties, softmax_error_model, threshold_margin,
                                     tolerance_for, top2_margin)
from ovseg.text import Vocabulary

CLIP_PREPROCESSOR = dict(type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
                         bgr_to_rgb=True)
# the original's foundation-model variants -> (ovseg name, timm overrides besides the depth)
VFMS = {'dino': ('dino_vitb8', {}), 'dinov2': ('dinov2_vitb14_reg', dict(init_values=1.0))}


def manifest(folder):
    return json.loads((parity_dir(folder) / 'manifest.json').read_text())


def cases(folder):
    return sorted(manifest(folder)['cases']) if parity_dir(folder) is not None else []


def case_arrays(folder, case):
    info = manifest(folder)['cases'][case]
    return np.load(parity_dir(folder) / info.get('file', f'{case}.npz'))


def vfm_checkpoint(shapes, seed, root):
    """Deterministic weights in the original VFM's key names, written to a temporary ``.pth`` (path returned;
    :func:`build_and_clean` removes it once the model is built)."""
    det = load_detweights(root)
    state = {k: torch.from_numpy(v) for k, v in det.det_state_dict({k: tuple(v) for k, v in shapes.items()},
                                                                  seed=seed).items()}
    path = Path(tempfile.mkdtemp(prefix='ovseg_vfm_')) / 'vfm_det.pth'
    torch.save(state, path)
    return str(path)


def vfm_config(kind, shapes, seed, root, feature='norm'):
    """The ``VFMBackbone`` config of a fixture's foundation model (depth from the weight names)."""
    name, extra = VFMS[kind]
    depth = 1 + max(int(k.split('.')[1]) for k in shapes if k.startswith('blocks.'))
    return dict(type='VFMBackbone', model_name=name, checkpoint=vfm_checkpoint(shapes, seed, root),
                model_kwargs=dict(extra, depth=depth), feature=feature)


def build_and_clean(cfg):
    """Build a segmentor config, then delete the temporary VFM checkpoint it was built from."""
    try:
        return MODELS.build(cfg)
    finally:
        shutil.rmtree(Path(cfg['vfm']['checkpoint']).parent, ignore_errors=True)


_CLIP_WEIGHTS = {}  # (root, seed, shapes) -> state dict: the cases of a folder share one CLIP


def load_clip(model, man, root, expected_shapes):
    """Load the deterministic CLIP weights into ``model.backbone.clip`` (shapes checked against the manifest)."""
    clip = model.backbone.clip
    key = (str(root), man['seed'], tuple(sorted((k, tuple(v)) for k, v in expected_shapes.items())))
    if key not in _CLIP_WEIGHTS:
        _CLIP_WEIGHTS.clear()
        _CLIP_WEIGHTS[key] = det_state_dict_for(clip, man['seed'], root=root)
    state = _CLIP_WEIGHTS[key]
    shapes = {k: list(v.shape) for k, v in state.items()}
    if shapes != {k: list(v) for k, v in expected_shapes.items()}:
        raise AssertionError(f'model parameters differ from the fixture weights: '
                             f'{sorted(set(shapes) ^ set(expected_shapes))[:8]}')
    clip.load_state_dict(state, strict=False)


def proxyclip_segmentor(folder, kind):
    """The ``ProxyCLIPSegmentor`` of a fixture folder with foundation model ``kind`` ('dino' or 'dinov2'),
    deterministic weights, eval mode; :func:`configure_proxyclip` sets a case's vocabulary and threshold."""
    man, root = manifest(folder), parity_dir(folder).parent
    method = man['method']
    cfg = dict(type='ProxyCLIPSegmentor', data_preprocessor=CLIP_PREPROCESSOR,
               backbone=dict(type='OpenCLIPBackbone', arch=man['model']['clip']['open_clip_config'],
                             attention=[dict(type='ExternalAffinityAttention', blocks=-1)], pos_mode='bicubic_scale'),
               vfm=vfm_config(kind, man['weights'][f'{kind}_shapes'], man['seed'], root),
               text_classifier=dict(type='OVTextClassifier', templates=man['text']['templates'], cache_dir=None),
               vocabulary=['x'], logit_scale=method['logit_scale'], beta=method['beta'], gamma=method['gamma'],
               pad_multiple=method['pad_multiple'],
               test_cfg=dict(mode='slide', crop_size=method['slide_crop'], stride=method['slide_stride'],
                             window_batch=4))
    model = build_and_clean(cfg)
    load_clip(model, man, root, man['weights']['clip_shapes'])
    return model.eval()


def configure_proxyclip(model, folder, case):
    """Set a case's class lines (split on '; ' as ``get_cls_idx`` does) and ``prob_thd``."""
    info = manifest(folder)['cases'][case]
    model.set_vocabulary(Vocabulary(tuple(tuple(line.split('; ')) for line in info['classes_file_lines']),
                                    verbatim=True))
    model.prob_thd = float(info['prob_thd'])
    return model


class FixedLabelMap:
    """A proposal source returning one stored label map (the fixtures' proposals are an input)."""

    needs_image = False

    def __init__(self, label_map):
        self.label_map = torch.from_numpy(np.asarray(label_map, dtype=np.int64))

    def __call__(self, image, meta):
        return self.label_map


def corrclip_segmentor(folder, case):
    """The ``CorrCLIPSegmentor`` of a fixture folder (the first case's DINO weights), eval mode;
    :func:`configure_corrclip` sets a case's vocabulary, threshold and proposals."""
    man, root = manifest(folder), parity_dir(folder).parent
    info, method = man['cases'][case], man['corrclip']
    cfg = dict(type='CorrCLIPSegmentor', data_preprocessor=CLIP_PREPROCESSOR,
               backbone=dict(type='CorrCLIPBackbone', arch=man['model']['open_clip_config'], alpha=method['ALPHA'],
                             beta=method['BETA']),
               vfm=vfm_config('dino', info['dino_shapes'], man['seed'], root, feature='q+k'),
               proposals=FixedLabelMap(np.zeros((1, 1))), tau=method['TAU'], dbscan_eps=method['dbscan']['eps'],
               dbscan_min_samples=method['dbscan']['min_samples'], pad_multiple=method['pad_multiple'],
               pad_value=method['pad_value_masks'],
               text_classifier=dict(type='OVTextClassifier', templates=man['text']['templates'], cache_dir=None),
               vocabulary=['x'], logit_scale=method['logit_scale'],
               test_cfg=dict(mode='slide', crop_size=method['slide_crop'], stride=method['slide_stride'],
                             window_batch=4))
    model = build_and_clean(cfg)
    load_clip(model, man, root, man['weights']['clip_shapes'])
    return model.eval()


def configure_corrclip(model, folder, case, label_map):
    """Set a case's class lines, ``prob_thd`` and proposals (the case's ``instance_mask``)."""
    info = manifest(folder)['cases'][case]
    model.set_vocabulary(Vocabulary(tuple(tuple(line.split('; ')) for line in info['classes']), verbatim=True))
    model.prob_thd = float(info['hyper']['prob_thd'])
    model.proposals = FixedLabelMap(label_map)
    return model


def sample_for(shape, ori_shape=None):
    """A SegDataSample with ``img_shape`` = shape and ``ori_shape`` (default the same)."""
    shape = tuple(int(s) for s in shape)
    return SegDataSample(metainfo=dict(ori_shape=tuple(int(s) for s in (ori_shape or shape)), img_shape=shape))


def segmentor_input(image_uint8, data_preprocessor):
    """(H, W, 3) RGB uint8 -> the preprocessed (1, 3, H, W) input, as mmseg loads and normalises it (BGR)."""
    image = torch.from_numpy(np.ascontiguousarray(image_uint8[..., ::-1])).permute(2, 0, 1)
    return data_preprocessor(dict(inputs=[image], data_samples=[sample_for(image.shape[-2:])]), False)['inputs']


@torch.no_grad()
def vfm_intermediates(vfm, x):
    """The foundation model on (1, 3, H, W) input: token arrays (N, D), prefix tokens first.

    Returns:
        dict: ``pos_grid`` (h*w, D: the resized grid part of the positional embedding), ``patch_embed``
        (h*w, D), ``tokens`` (after the positional embedding), ``block{i}_out``, ``norm_out``, ``q`` / ``k`` / ``v`` of the last block, ``grid``.
    """
    tower = vfm.tower
    depth = vfm.depth
    tokens, grid, _ = tower.embed(x)
    pos = vfm.trunk.pos_embed[0]
    if getattr(vfm.trunk, 'no_embed_class', False):
        pos = torch.cat([pos.new_zeros(1, pos.shape[-1]), pos])
    stored = tuple(vfm.trunk.patch_embed.grid_size)
    if tower.default_pos_mode == 'timm':
        from timm.layers import resample_abs_pos_embed
        pos_grid = resample_abs_pos_embed(pos[None, 1:], new_size=grid, old_size=stored, num_prefix_tokens=0)[0]
    else:
        pos_grid = resize_pos_embed(pos, grid, tower.default_pos_mode, stored)[1:]
    taps = [f'blocks.{i}' for i in range(depth)] + [f'blocks.{depth - 1}.{s}' for s in 'qkv']
    result = walk(tower, tokens=tokens, grid=grid, taps=taps)
    out = dict(grid=grid, tokens=tokens[0], pos_grid=pos_grid,
               patch_embed=vfm.trunk.patch_embed.proj(x).flatten(2).transpose(1, 2)[0],
               norm_out=vfm.trunk.norm(result.taps[f'blocks.{depth - 1}'])[0])
    out.update({f'block{i}_out': result.taps[f'blocks.{i}'][0] for i in range(depth)})
    out.update({s: result.taps[f'blocks.{depth - 1}.{s}'][0] for s in 'qkv'})
    return out


def assert_prediction_rule_on_fixture_logits(logits, expected, emb, scale, prob_thd, name):
    """The prediction step replayed on the fixture's own (query, H, W) logits: only the float32 rounding of
    ``softmax(scale * logits)`` separates it from the reference, so every pixel farther than that bound from
    a tie or from ``prob_thd`` must match. This checks the decision rule itself on every case, however flat
    the random-weight scores are; the end-to-end prediction is then compared away from the (much wider)
    ties that the whole network's error bound allows."""
    logits = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    probs, pred, _ = query_probabilities(logits, emb.synonym_to_class, emb.num_classes, scale, None, prob_thd)
    raw = probs.numpy()
    margin = top2_margin(raw, axis=0)
    if prob_thd > 0:
        margin = np.minimum(margin, threshold_margin(raw.max(axis=0), prob_thd))
    tol = tolerance_for(raw, **softmax_error_model(dict(depth=2, width=1), logits.numpy() * scale))
    assert_equal_away_from_ties(pred[0].numpy(), expected, margin, tol, name=name)

