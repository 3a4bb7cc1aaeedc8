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

from ovseg.models.proposals.sam import SAMPredictor
from ovseg.testing.parity import det_state_dict_for, parity_dir
from ovseg.testing.vfm_parity import (CLIP_PREPROCESSOR, build_and_clean, case_arrays, cases, load_clip, manifest,
                                     sample_for, segmentor_input, vfm_checkpoint)
from ovseg.text import Vocabulary

FOLDER = 'trident'
__all__ = ['FOLDER', 'case_arrays', 'cases', 'clip_arch', 'configure', 'manifest', 'sam_config', 'sample_for',
           'segmentor_input', 'trident_segmentor']


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


@torch.no_grad()
def run_case(folder, case):
    """A case through the whole pipeline: the model, the fixture arrays and every intermediate (``trace``)."""
    model = configure(trident_segmentor(folder), folder, case)
    fx = case_arrays(folder, case)
    image = np.asarray(fx['image_uint8'])
    inputs = torch.from_numpy(fx['pixel_values'])  # the demo's input: OpenAI statistics on 0..1
    trace = {}
    scores, pred = model.segment_image(inputs, image, trace)
    return model, fx, dict(trace, scores=scores, pred=pred, inputs=inputs)
