"""FC-CLIP parity with the original code (fixtures in $OVSEG_PARITY_DIR/fcclip).

The fixture weights carry the ORIGINAL detectron2 names; they are loaded through the checkpoint converter
(``tools/model_converters/fcclip_to_ovseg.py``). Every case of the manifest is checked with the tolerances
the folder's README gives.
"""
import importlib.util
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ovseg.models.fcclip import seen_class_mask
from ovseg.registry import MODELS
from ovseg.testing import load_detweights, parity_dir

FOLDER = 'fcclip'
ROOT = parity_dir(FOLDER)
CONVERTER = Path(__file__).resolve().parents[2] / 'tools' / 'model_converters' / 'fcclip_to_ovseg.py'
pytestmark = pytest.mark.skipif(ROOT is None, reason=f'parity fixtures not found: set OVSEG_PARITY_DIR '
                                                     f'to a folder holding {FOLDER}/')


def _converter():
    spec = importlib.util.spec_from_file_location('fcclip_to_ovseg', CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manifest():
    return json.loads((ROOT / 'manifest.json').read_text())


def _case_names():
    return [c['name'] for c in _manifest()['cases']] if ROOT is not None else []


def _vocab(case):
    """FC-CLIP's synonym rule: ', ' -> ',', split on ','."""
    return [v['name'].replace(', ', ',').split(',') for v in case['test_vocabulary']]


def _model_cfg(man):
    """An ovseg FC-CLIP config equivalent to the fixture's detectron2 config."""
    d2_all = yaml.safe_load(man['detectron2_config_yaml'])
    d2, d2_test = d2_all['MODEL'], d2_all['TEST']
    mf, head, fc = d2['MASK_FORMER'], d2['SEM_SEG_HEAD'], d2['FC_CLIP']
    clip = json.loads(json.dumps(man['open_clip_model_config']))
    clip.pop('name')
    clip['vision_cfg']['timm_model_name'] = 'convnext_atto'  # placeholder trunk, replaced by _swap_trunk
    return dict(
        type='FCCLIPSegmentor',
        backbone=dict(type='OpenCLIPBackbone', arch=clip),
        pixel_decoder=dict(type='FCCLIPPixelDecoder', in_channels=man['timm_trunk']['dims'],
                           conv_dim=head['CONVS_DIM'], mask_dim=head['MASK_DIM'],
                           num_layers=head['TRANSFORMER_ENC_LAYERS'], num_heads=mf['NHEADS'],
                           num_points=head['DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS'], ffn_dim=1024,
                           dropout=mf['DROPOUT']),
        transformer_decoder=dict(type='FCCLIPTransformerDecoder', in_channels=head['CONVS_DIM'],
                                 hidden_dim=mf['HIDDEN_DIM'], num_queries=mf['NUM_OBJECT_QUERIES'],
                                 num_heads=mf['NHEADS'], ffn_dim=mf['DIM_FEEDFORWARD'],
                                 num_layers=mf['DEC_LAYERS'] - 1, pre_norm=mf['PRE_NORM'],
                                 mask_dim=head['MASK_DIM'], enforce_input_proj=mf['ENFORCE_INPUT_PROJ'],
                                 class_head=dict(type='FCCLIPInVocabClassifier', text_dim=fc['EMBED_DIM'])),
        text_classifier=dict(type='OVTextClassifier', templates=man['templates'], cache_dir=None),
        criterion=dict(type='MaskSetCriterion', class_weight=mf['CLASS_WEIGHT'],
                       mask_weight=mf['MASK_WEIGHT'], dice_weight=mf['DICE_WEIGHT'],
                       no_object_weight=mf['NO_OBJECT_WEIGHT'],
                       num_points=mf['TRAIN_NUM_POINTS'], oversample_ratio=mf['OVERSAMPLE_RATIO'],
                       importance_sample_ratio=mf['IMPORTANCE_SAMPLE_RATIO'],
                       deep_supervision=mf['DEEP_SUPERVISION']),
        ensemble=dict(alpha=fc['GEOMETRIC_ENSEMBLE_ALPHA'], beta=fc['GEOMETRIC_ENSEMBLE_BETA'],
                      on_valid_mask=fc['ENSEMBLE_ON_VALID_MASK']),
        test_cfg=dict(semantic_on=mf['TEST']['SEMANTIC_ON'], panoptic_on=mf['TEST']['PANOPTIC_ON'],
                      instance_on=mf['TEST']['INSTANCE_ON'],
                      object_mask_threshold=mf['TEST']['OBJECT_MASK_THRESHOLD'],
                      overlap_threshold=mf['TEST']['OVERLAP_THRESHOLD'],
                      max_per_image=d2_test['DETECTIONS_PER_IMAGE']),
        size_divisor=mf['SIZE_DIVISIBILITY'], vocabulary=['x'], train_vocabulary=man['train_vocabulary'])


def _swap_trunk(clip, man):
    """Give the CLIP the fixture's timm ConvNeXt trunk (depths/dims from the manifest) and MLP head."""
    from timm.layers import Mlp
    from timm.models.convnext import ConvNeXt
    spec, embed = man['timm_trunk'], man['open_clip_model_config']['embed_dim']
    clip.visual.trunk = ConvNeXt(depths=spec['depths'], dims=spec['dims'], num_classes=0)
    clip.visual.head = torch.nn.Sequential(OrderedDict(
        mlp=Mlp(spec['dims'][-1], 2 * embed, embed, bias=(True, False))))


@pytest.fixture(scope='module')
def model():
    man = _manifest()
    net = MODELS.build(_model_cfg(man))
    _swap_trunk(net.backbone.clip, man)
    shapes = {k: v for k, v in man['state_dict'].items()}
    weights = load_detweights(ROOT.parent).det_state_dict(shapes, seed=man['weight_seed'])
    original = {k: torch.from_numpy(v) for k, v in weights.items()}
    state, unmatched = _converter().convert_fcclip_state_dict(original)
    assert not unmatched, f'converter left keys unmatched: {unmatched}'
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return net.eval()


def _load(name):
    case = next(c for c in _manifest()['cases'] if c['name'] == name)
    return case, np.load(ROOT / case['file'])


def _close(actual, expected, atol, rtol=0.0):
    np.testing.assert_allclose(actual.detach().cpu().numpy(), expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_text(model, name):
    case, fx = _load(name)
    tc = model.text_classifier
    prompts = [t.format(s) for cls in _vocab(case) for s in cls for t in tc.templates]
    assert prompts == case['test_class_names_templated']
    tokens = tc.tokenize(model.backbone, prompts)
    np.testing.assert_array_equal(tokens.numpy(), fx['text_tokens'])
    _close(model.backbone.encode_tokens(tokens), fx['text_features_raw'], 1e-5)
    model.set_vocabulary(_vocab(case))
    _close(model.class_embeddings().embeddings, fx['text_classifier'], 1e-6)
    _close(model.class_embeddings(model.train_vocabulary).embeddings[:-1], fx['train_text_classifier'], 1e-6)


_RUNS = {}


def _run(model, name):
    """Inference (unpadded input: the model pads) and postprocessing of one case, computed once."""
    if name not in _RUNS:
        from mmseg.structures import SegDataSample
        case, fx = _load(name)
        model.set_vocabulary(_vocab(case), [i for i, v in enumerate(case['test_vocabulary']) if v['isthing']])
        h, w = case['input_hw']
        x = torch.from_numpy(fx['backbone_input_normalized_padded'])[..., :h, :w]
        meta = dict(img_shape=(h, w), ori_shape=tuple(case['output_hw']))
        with torch.no_grad():
            out = model.inference(x)
            result = model.postprocess(out['log_probs'][0], out['pred_masks'][0], out['padded_shape'], meta,
                                       SegDataSample(metainfo=meta))
        _RUNS[name] = (case, fx, out, result)
    return _RUNS[name]


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_preprocessing(model, name):
    case, fx = _load(name)
    d2 = yaml.safe_load(_manifest()['detectron2_config_yaml'])['MODEL']
    pre = MODELS.build(dict(type='SegDataPreProcessor', mean=d2['PIXEL_MEAN'], std=d2['PIXEL_STD']))
    x = pre(dict(inputs=[torch.from_numpy(fx['input_image_chw'])]), training=False)['inputs']
    _close(model._pad(x), fx['backbone_input_normalized_padded'], 1e-5)


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_backbone_and_pixel_decoder(model, name):
    case, fx, out, _ = _run(model, name)
    for key in ('res2', 'res3', 'res4', 'res5', 'clip_vis_dense'):
        _close(out['features'].tokens[key], fx[f'backbone_{key}'], 1e-5)
    pix = out['pixel_decoder']
    _close(pix.mask_features, fx['pixdec_mask_features'], 1e-4)
    for i, level in enumerate(pix.multi_scale_features):
        _close(level, fx[f'pixdec_multi_scale_{i}'], 1e-4)
    _close(pix.multi_scale_features[0], fx['pixdec_transformer_encoder_features'], 1e-4)


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_decoder_and_ensemble(model, name):
    case, fx, out, _ = _run(model, name)
    seen_ref = fx['category_overlapping_mask']
    np.testing.assert_array_equal(np.asarray(case['category_overlapping_mask']), seen_ref)
    seen = seen_class_mask(_vocab(case), model.train_vocabulary)
    np.testing.assert_array_equal(seen.long().numpy(), fx['category_overlapping_mask'])
    _close(out['pred_logits'], fx['pred_logits'], 1e-4)
    _close(out['pred_masks'], fx['pred_masks'], 1e-3, 1e-4)
    num_aux = len(out['aux_outputs'])
    assert num_aux == sum(f'aux{i}_pred_logits' in fx for i in range(num_aux + 1))
    for i, aux in enumerate(out['aux_outputs']):
        _close(aux['pred_logits'], fx[f'aux{i}_pred_logits'], 1e-4)
        _close(aux['pred_masks'], fx[f'aux{i}_pred_masks'], 1e-3, 1e-4)
    ov = out['out_vocab']
    _close(ov.mask_for_pooling, fx['mask_for_pooling'], 1e-3, 1e-4)
    _close(ov.pooled_raw, fx['clip_mask_pooled_raw'], 1e-4)
    _close(ov.pooled_embed, fx['pooled_clip_feature'], 1e-4)
    _close(ov.logits[..., :-1], fx['out_vocab_logits'], 1e-4)
    for key, ref in (('out_probs', 'out_vocab_probs'), ('in_probs', 'in_vocab_probs'),
                     ('ensemble_log_probs', 'ensemble_log_probs'), ('void_prob', 'is_void_prob'),
                     ('probs', 'ensembled_probs_with_void'), ('log_probs', 'final_mask_cls_logprobs')):
        _close(out[key], fx[ref], 1e-4)


def _instance_rows(labels, scores, masks):
    order = np.lexsort((np.round(scores, 5), labels))
    return labels[order], scores[order], masks[order]


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_semantic_panoptic_instance(model, name):
    case, fx, _, result = _run(model, name)
    _close(result.seg_logits.data, fx['sem_seg'], 1e-4)
    pan = result.pred_panoptic_seg
    assert pan.segments_info == case['panoptic_segments_info']
    wrong = (pan.data[0].numpy() != fx['panoptic_seg']) & (fx['panoptic_fragile'] == 0)
    assert wrong.sum() == 0, f'{wrong.sum()} non-fragile panoptic pixels differ'
    inst = result.pred_instances
    got = _instance_rows(inst.labels.numpy(), inst.scores.numpy(), inst.masks.numpy().astype(np.uint8))
    ref = _instance_rows(fx['instances_pred_classes'], fx['instances_scores'], fx['instances_pred_masks'])
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-4)
    assert (got[2] != ref[2]).mean() < 1e-3


class _StoredRand:
    """Replays the fixture's ``torch.rand`` outputs in call order, checking each requested shape."""

    def __init__(self, fx, calls):
        self.arrays = [fx[f'loss_rand_{i:02d}'] for i in range(len(calls))]
        self.calls = [tuple(c) for c in calls]
        self.i = 0

    def __call__(self, shape, device):
        assert tuple(shape) == self.calls[self.i], (shape, self.calls[self.i])
        out = torch.from_numpy(self.arrays[self.i]).to(device)
        self.i += 1
        return out


class _RecordingMatcher:
    def __init__(self, matcher):
        self.matcher, self.calls = matcher, []

    def __call__(self, outputs, targets, rand):
        indices = self.matcher(outputs, targets, rand=rand)
        self.calls.append(indices)
        return indices


@pytest.mark.parametrize('name', _case_names())
def test_parity_fcclip_training_loss(model, name):
    from mmengine.structures import InstanceData
    from mmseg.structures import SegDataSample
    case, fx = _load(name)
    sample = SegDataSample(metainfo=dict(img_shape=tuple(case['input_hw'])))
    sample.gt_instances = InstanceData(labels=torch.from_numpy(fx['gt_labels']),
                                       masks=torch.from_numpy(fx['gt_masks']).bool())
    rand = _StoredRand(fx, case['loss_rand_calls'])
    matcher = model.criterion.matcher
    model.criterion.matcher = _RecordingMatcher(matcher)
    model.train()
    try:
        losses = model.loss(torch.from_numpy(fx['backbone_input_normalized_padded']), [sample], rand=rand)
        calls = model.criterion.matcher.calls
    finally:
        model.criterion.matcher = matcher
        model.eval()
    assert rand.i == len(rand.arrays)
    for i, indices in enumerate(calls):
        np.testing.assert_array_equal(indices[0][0].numpy(), fx[f'match_{i}_src'])
        np.testing.assert_array_equal(indices[0][1].numpy(), fx[f'match_{i}_tgt'])
    assert sorted(losses) == sorted(case['loss_dict'])
    for key, value in case['loss_dict'].items():
        assert losses[key].item() == pytest.approx(value, rel=1e-4), key
