"""The Trident parity model, built from a fixture folder's manifest (``$OVSEG_PARITY_DIR/trident``).

The fixture draws deterministic weights for three networks in their originals' own names: CLIP (OpenAI
names, QuickGELU, built here from an inline open_clip config), DINO (facebookresearch/dino names,
converted to timm's by :func:`ovseg.models.backbones.vfm_loader.convert_vfm_state_dict`) and SAM
(segment-anything names). :func:`trident_segmentor` builds the ``TridentSegmentor`` of the manifest's
settings (Trident's VOC-21 config) with those weights; :func:`configure` sets a case's vocabulary.
"""
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ovseg.models.proposals.sam import SAMPredictor
from ovseg.models.utils.query_rules import query_probabilities
from ovseg.testing.parity import det_state_dict_for, parity_dir
from ovseg.testing.tolerance import assert_close, assert_equal_away_from_ties
from ovseg.testing.vfm_parity import (CLIP_PREPROCESSOR, build_and_clean, case_arrays, cases, load_clip, manifest,
                                     sample_for, segmentor_input, vfm_checkpoint)
from ovseg.text import Vocabulary

FOLDER = 'trident'
__all__ = ['FOLDER', 'SAMProbe', 'assert_close_beyond', 'assert_prediction', 'case_arrays', 'cases', 'clip_arch',
           'clip_window_taps', 'configure', 'dino_tie_effects', 'manifest', 'probs_from_cos', 'propagate_allowance',
           'run_case', 'sam_config', 'sample_for', 'segmentor_input', 'trident_segmentor']


def clip_arch(model):
    """The manifest's CLIP section -> an inline open_clip config (OpenAI geometry, QuickGELU)."""
    v, t = model['vision'], model['text']
    return dict(embed_dim=model['embed_dim'], quick_gelu=bool(model.get('quick_gelu', True)),
                vision_cfg=dict(image_size=v['image_size'], layers=v['layers'], width=v['width'],
                                head_width=v['width'] // v['heads'], patch_size=v['patch_size'],
                                mlp_ratio=v['mlp_ratio']),
                text_cfg=dict(context_length=t['context_length'], vocab_size=t['vocab_size'], width=t['width'],
                              heads=t['heads'], layers=t['layers']))


def sam_config(model):
    """The manifest's SAM section -> a ``SAMPredictor`` config (segment-anything's vit_b geometry, reduced
    depth; the global-attention blocks as listed)."""
    sam = model['sam']
    builder = sam['builder']
    depth = int(builder.split('encoder_depth=')[1].split(',')[0])
    globals_ = [int(i) for i in builder.split('encoder_global_attn_indexes=[')[1].split(']')[0].split(',')]
    return dict(type='SAMPredictor', arch='vit_b', image_size=sam['image_size'], depth=depth,
                global_attn_indexes=tuple(globals_), window_size=sam['window_size'])


def _dino_config(man, root):
    dino = man['model']['dino']
    name = f"dino_vit{'b' if dino['embed_dim'] == 768 else 's'}{dino['patch_size']}"
    shapes = {k: tuple(v) for k, v in man['weights']['dino']['names'].items()}
    return dict(type='VFMBackbone', model_name=name, checkpoint=vfm_checkpoint(shapes, man['seed'], root),
                model_kwargs=dict(depth=dino['depth']), feature='norm')


def load_sam(predictor, man, root):
    """Deterministic SAM weights into a ``SAMPredictor`` (names and shapes checked against the manifest)."""
    sam = predictor.model
    state = det_state_dict_for(sam, man['seed'], root=root)
    expected = man['weights']['sam']['names']
    if {k: list(v.shape) for k, v in state.items()} != {k: list(v) for k, v in expected.items()}:
        raise AssertionError(f'SAM parameters differ from the fixture weights: '
                             f'{sorted(set(state) ^ set(expected))[:8]}')
    sam.load_state_dict(state)


@lru_cache(maxsize=1)
def trident_segmentor(folder=FOLDER):
    """The ``TridentSegmentor`` of a fixture folder: the manifest's hyper-parameters, deterministic
    weights, eval mode (cached: the cases share it; :func:`configure` sets a case's vocabulary)."""
    man, root = manifest(folder), parity_dir(folder).parent
    hp = man['hyper_parameters']
    sam = SAMPredictor(**{k: v for k, v in sam_config(man['model']).items() if k != 'type'})
    load_sam(sam, man, root)
    cfg = dict(
        type='TridentSegmentor', data_preprocessor=CLIP_PREPROCESSOR,
        backbone=dict(type='OpenCLIPBackbone', arch=clip_arch(man['model']['clip']),
                      attention=[dict(type='ExternalAffinityAttention', blocks=-1)], pos_mode='bicubic_scale'),
        vfm=_dino_config(man, root),
        sam_refiner=dict(type='SAMRefiner', sam=sam, coarse_thresh=hp['coarse_thresh'],
                         minimal_area=hp['minimal_area'], mask_coeff=hp['sam_mask_coff'],
                         iou_thresh=hp['sam_iou_thresh'], down_ratio=hp['down_ratio'], failed_rule='reference',
                         mask_prompt_layout='trident', resolution='original', image_multiple=16),
        aggregator=dict(type='SAMCorrelationAggregator', cos_fac=hp['cos_fac'], max_thresh=0.9,
                        keep_negative=hp['refine_neg_cos']),
        text_classifier=dict(type='OVTextClassifier', templates=man['text']['templates'], cache_dir=None),
        vocabulary=['x'], logit_scale=hp['logit_scale'], prob_thd=hp['prob_thd'], beta=hp['beta'],
        gamma=hp['gamma'], sam_refinement=hp['sam_refinement'],
        test_cfg=dict(crop_size=hp['slide_crop'], stride=hp['slide_stride'], window_batch=4))
    model = build_and_clean(cfg)
    load_clip(model, man, root, man['weights']['clip']['names'])
    return model.eval()


def configure(model, folder, case):
    """Set a case's class lines (split on '; ' as Trident's ``get_cls_idx`` does)."""
    info = manifest(folder)['cases'][case]
    model.set_vocabulary(Vocabulary(tuple(tuple(line.split('; ')) for line in info['class_lines']),
                                    verbatim=True))
    return model


class SAMProbe:
    """Observer of the SAM-correlation pass (``SAMCorrelationAggregator.correlation(observe=...)``): keeps
    the attention rows and cosines of the fixture's rows, the thresholds and values, and per query row the
    kept attention mass and the mass within ``band`` of the threshold (the near ties), both summed over
    heads and keys and divided by the number of heads (the aggregation's own normalisation)."""

    def __init__(self, rows_full, rows_valid, band):
        self.rows_full, self.rows_valid, self.band = rows_full, rows_valid, float(band)
        self.attn_rows, self.cos_rows = [], []
        self.kept_mass = self.tie_mass = self.tie_rows = None
        self.heads = 0

    def __call__(self, d):
        attn, valid, cos, thresh = d['attn'][0], d['valid'][0].float(), d['cos'][0], d['thresh'][0]
        self.attn_rows.append(attn[:, self.rows_full].float())
        self.cos_rows.append(cos[:, self.rows_valid])
        gap = cos - thresh[None, :, None]
        near = valid * (gap.abs() <= self.band)
        sums = ((valid * (gap > 0)).sum(dim=(0, 2)), near.sum(dim=(0, 2)), near[:, self.rows_valid].sum(dim=0))
        if self.kept_mass is None:
            self.kept_mass, self.tie_mass, self.tie_rows = sums
        else:
            self.kept_mass, self.tie_mass, self.tie_rows = (a + b for a, b in zip((self.kept_mass, self.tie_mass,
                                                                                  self.tie_rows), sums))
        self.heads += len(d['heads'])
        self.thresh, self.v = thresh, d['v'][0]

    def result(self):
        """Arrays of the fixture's layout: attention rows (heads, R, L), cosine rows (heads, R, N), and
        kept / near-tie masses per row (N,) and per entry of the fixture's rows (R, N), head-averaged."""
        return dict(attn_rows=torch.cat(self.attn_rows), cos_rows=torch.cat(self.cos_rows), thresh=self.thresh,
                    v=self.v, kept_mass=self.kept_mass / self.heads, tie_mass=self.tie_mass / self.heads,
                    tie_rows=self.tie_rows / self.heads)


@torch.no_grad()
def run_case(folder, case, sam_band=0.0):
    """A case through the whole pipeline: the model, the fixture arrays and every intermediate: the
    segmentor's ``trace``, SAM's patch embedding and block outputs (forward hooks) and a :class:`SAMProbe`
    with near-tie band ``sam_band``."""
    model = configure(trident_segmentor(folder), folder, case)
    fx = case_arrays(folder, case)
    image = np.asarray(fx['image_uint8'])
    inputs = torch.from_numpy(fx['pixel_values'])  # the demo's input: OpenAI statistics on 0..1
    encoder = model.sam.model.image_encoder
    sam_taps = {}
    modules = {'patch_embed': encoder.patch_embed, **{f'block{i}': b for i, b in enumerate(encoder.blocks[:-1])}}
    handles = [m.register_forward_hook(lambda mod, a, out, n=n: sam_taps.__setitem__(n, out))
               for n, m in modules.items()]
    last = f'block{len(encoder.blocks) - 1}'  # computed by hand in the correlation pass: the neck's input
    handles.append(encoder.neck.register_forward_pre_hook(
        lambda mod, a: sam_taps.__setitem__(last, a[0].permute(0, 2, 3, 1))))
    probe = SAMProbe(torch.from_numpy(fx['sam_row_idx_full64']), torch.from_numpy(fx['sam_row_idx']), sam_band)
    trace = {}
    try:
        scores, pred = model.segment_image(inputs, image, trace, observe=probe)
    finally:
        for handle in handles:
            handle.remove()
    return model, fx, dict(trace, scores=scores, pred=pred, inputs=inputs, sam_taps=sam_taps, sam_probe=probe.result())


@torch.no_grad()
def clip_window_taps(model, trace):
    """CLIP on the case's windows with the proxy attention, through the walker with taps: ``embed``, every
    block's output, the last block's ``ln_1`` and ``v`` (each (n, 1 + L, D))."""
    from ovseg.models.backbones.vit_towers import vit_tower
    from ovseg.models.backbones.vit_walker import walk
    tower = vit_tower(model.backbone.clip.visual)
    last = len(tower.blocks) - 1
    taps = ['embed'] + [f'blocks.{i}' for i in range(last)] + [f'blocks.{last}.ln_1', f'blocks.{last}.v']
    return walk(tower, trace['windows'], strategies=model.backbone.strategies, taps=taps,
                external={'affinity': trace['window_affinity']}, pos_mode=model.backbone.pos_mode).taps


@torch.no_grad()
def dino_tie_effects(model, trace, values, band):
    """The largest change of the windows' proxy-attention output that flips of near-tie DINO cuts can cause.

    An entry of the proxy attention is cut (weight 0) when its logit ``γ (S - β μ)`` is negative; entries
    within ``band`` of 0 may fall on either side in another float32 evaluation. For each such entry the
    output row is recomputed with that one decision toggled (``out_proj((p' - p) @ v)``, the bias cancels);
    the absolute changes are summed per token, a bound for any subset of flips to first order.

    Args:
        values (Tensor): (n, L, D) the last CLIP block's values of the windows (prefix dropped).
        band (float): half-width of the near-tie band around the cut.

    Returns:
        tuple[Tensor, int]: (n, D, I, J) allowance per window token, and the number of near ties.
    """
    feats = torch.nn.functional.normalize(trace['vfm_feats'].float().flatten(2), dim=1)
    sim = feats.transpose(1, 2) @ feats
    logits = model.gamma * (sim - model.beta * sim.mean())
    weights = trace['window_affinity'].weights
    out_proj = model.backbone.clip.visual.transformer.resblocks[-1].attn.out_proj.weight
    effect = torch.zeros_like(values)
    near = (logits.abs() <= band).nonzero().tolist()
    for w, m, k in near:
        row = logits[w, m].clone()
        row[k] = -float('inf') if row[k] >= 0 else 0.0
        toggled = row.masked_fill(row < 0, -float('inf')).softmax(dim=-1)
        effect[w, m] += (((toggled - weights[w, m]) @ values[w]) @ out_proj.T).abs()
    n, length, dim = values.shape
    return effect.transpose(1, 2).reshape(n, dim, *trace['window_affinity'].grid), len(near)


@torch.no_grad()
def propagate_allowance(model, trace, window_effect, probe):
    """Bounds of the change that near-tie decisions can cause downstream, stage by stage.

    Linear stages carry absolute bounds exactly (the splice averages, the bilinear resize and the
    aggregation weights are non-negative). SAM's threshold ties change a row m of the weights by at most
    the near-tie mass T_m relative to the kept mass R_m, so the aggregated row moves by at most
    ``T_m / (R_m - T_m) * (max_n |r_n| + |g_m|)`` per channel. ``ln_post``, ``proj`` and the cosine are
    bounded to first order (LayerNorm's Jacobian, the absolute projection matrix, the cosine's gradient),
    doubled for the neglected higher-order terms.

    Returns:
        dict: ``spliced`` (D, h, w), ``resized`` / ``guided`` / ``ln_post`` (D, sh, sw), ``feats``
        (C, sh, sw) and ``cos`` (Q, sh, sw) allowances.
    """
    affinity = trace['sam_affinities'][0]
    spliced = model.splicer.splice(window_effect, trace['window_boxes'], tuple(trace['spliced'].shape[-2:]))[0]
    resized = F.interpolate(spliced, size=affinity.grid, mode='bilinear', align_corners=False)[0].flatten(1)
    values = F.interpolate(trace['spliced'], size=affinity.grid, mode='bilinear', align_corners=False)[0]
    guided = trace['aggregated'][0].flatten(1)
    ratio = probe['tie_mass'] / (probe['kept_mass'] - probe['tie_mass']).clamp(min=1e-30)
    allow = resized @ affinity.weights[0].T + ratio[None] * (values.flatten(1).abs().amax(dim=1, keepdim=True)
                                                            + guided.abs())
    visual = model.backbone.clip.visual
    x = guided.T  # (N, D)
    sigma = x.var(dim=-1, unbiased=False, keepdim=True).add(visual.ln_post.eps).sqrt()
    xhat = (x - x.mean(dim=-1, keepdim=True)) / sigma
    e = allow.T
    ln_allow = visual.ln_post.weight.abs() / sigma * (e + e.mean(dim=-1, keepdim=True)
                                                     + xhat.abs() * (xhat.abs() * e).mean(dim=-1, keepdim=True))
    feat_allow = ln_allow @ visual.proj.abs()
    feats = model.backbone.project_dense(trace['aggregated'])[0].flatten(1).T  # (N, C)
    norm = feats.norm(dim=-1, keepdim=True)
    emb = model.class_embeddings().embeddings.float()
    cos = trace['cos_grid'].flatten(1).T  # (N, Q)
    cos_allow = (feat_allow @ emb.abs().T) / norm + cos.abs() * feat_allow.norm(dim=-1, keepdim=True) / norm
    grid = affinity.grid
    return dict(spliced=spliced[0], resized=resized.view(-1, *grid), guided=allow.view(-1, *grid),
                ln_post=2 * ln_allow.T.reshape(-1, *grid), feats=2 * feat_allow.T.reshape(-1, *grid),
                cos=2 * cos_allow.T.reshape(-1, *grid))


def _np(x):
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def assert_close_beyond(actual, expected, allowance, name, **model):
    """``assert_close`` on what is left of the difference once the tie ``allowance`` (elementwise, >= 0)
    is taken off it."""
    actual, expected, allowance = _np(actual).astype(np.float64), _np(expected), _np(allowance)
    diff = actual - expected
    return assert_close(expected + np.sign(diff) * np.maximum(np.abs(diff) - allowance, 0), expected,
                        name=name, **model)


def probs_from_cos(model, cos, size):
    """The classification stage on a (Q, sh, sw) cosine grid: bilinear to ``size``, probabilities."""
    emb = model.class_embeddings()
    logits = F.interpolate(torch.as_tensor(cos)[None].float(), size=tuple(size), mode='bilinear',
                           align_corners=False)[0]
    probs, pred, _ = query_probabilities(logits, emb.synonym_to_class, emb.num_classes, model.logit_scale,
                                         None, model.prob_thd)
    return logits, probs, pred


def assert_prediction(actual, expected, margin, tol, name):
    """A label map equal away from ties. With random weights the class probabilities are flat (about
    half of case 0's pixels sit near ``prob_thd``), so near ties are many and any of them may flip: the
    pixels away from ties are compared exactly, however many are near."""
    near = int((np.asarray(margin) <= tol).sum())
    assert_equal_away_from_ties(_np(actual), expected, margin, tol, max_flips=near, max_near_fraction=1.0,
                                name=name)
