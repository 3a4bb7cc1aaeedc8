"""bf16 vs fp32 agreement (looser than parity, documented in configs/maskclip/README.md).

The parity fixtures' MaskCLIP and CLIP-DINOiser models (deterministic weights, 4-layer ViT-B width)
run the fixtures' inputs and real scikit-image photographs in float32 and in bf16 autocast. Bounds:

- argmax agreement >= 99 % on every input (deterministic weights leave many locations nearly tied:
  with the full ViT-B/16 and ADE-150 the median top-2 logit margin is about 0.4, i.e. 0.004 in
  cosine, and 5 % of the locations are within 0.015);
- every location whose float32 top-2 logit margin exceeds 0.1 keeps its class;
- head logits (scaled cosines, logit scale 100) move by at most 0.2; probabilities by at most 0.03
  (bounds observed on these inputs, with margin);
- and, exactly, for any input: probabilities move by at most half the largest logit change, and a location
  changes class only if its float32 top-2 margin is at most twice that change.
"""
import json

import numpy as np
import pytest
import torch

from ovseg.registry import MODELS
from ovseg.testing import load_tool, det_state_dict_for, parity_dir

ROOT = parity_dir('maskclip_dinoiser')
pytestmark = pytest.mark.skipif(ROOT is None, reason='parity fixtures not found: set OVSEG_PARITY_DIR')


def _tool():
    return load_tool('analysis/precision_agreement')


def _model(refine):
    man = json.loads((ROOT / 'manifest.json').read_text())
    cfg = dict(type='OVSegmentor',
               data_preprocessor=dict(type='SegDataPreProcessor', bgr_to_rgb=True,
                                      mean=[122.7709383, 116.7460125, 104.09373615],
                                      std=[68.5005327, 66.6321579, 70.32316305]),
               backbone=dict(type='OpenCLIPBackbone', arch=man['model']['open_clip_config']),
               text_classifier=dict(type='OVTextClassifier', templates='single', cache_dir=None),
               head=dict(type='OVSimilarityHead', logit_scale=100.0), vocabulary='voc20')
    if refine:
        cfg['refiner'] = dict(type='CLIPDINOiserRefiner', in_channels=768, proj_channels=256)
    model = MODELS.build(cfg)
    for part in (model.backbone.clip, model.refiner):
        if part is not None:
            part.load_state_dict(det_state_dict_for(part, man['seed'], root=ROOT.parent),
                                 strict=False)
    return model.eval()


@pytest.mark.parametrize('refine', [False, True], ids=['maskclip', 'clip_dinoiser'])
def test_bf16_agreement_on_parity_inputs_and_real_images(refine):
    tool = _tool()
    model = _model(refine)
    inputs = [(name, tool.skimage_input(name, 224, model), None) for name in ('astronaut', 'coffee')]
    inputs += list(tool.parity_inputs())
    for name, x, vocab in inputs:
        model.set_vocabulary(vocab if vocab is not None else 'voc20')
        row = tool.compare(model, x, 'bf16')
        assert row['agreement'] >= 0.99, (name, row)
        assert row['decisive_agreement'] == 1.0, (name, row)
        assert row['max_logit_diff'] <= 0.2 and row['max_prob_diff'] <= 0.03, (name, row)
        # exact for any input: softmax is 1/2-Lipschitz in the max norm, and a location can only flip
        # when its float32 top-2 margin is at most twice the largest logit change
        assert row['max_prob_diff'] <= 0.5 * row['max_logit_diff'] + 1e-6, (name, row)
        assert row['flip_max_margin'] <= 2 * row['max_logit_diff'] + 1e-6, (name, row)
    assert model.precision == 'fp32'  # compare() restores it


def test_fp32_pass_of_the_tool_is_the_plain_model():
    tool = _tool()
    model = _model(False)
    name, x, vocab = next(tool.parity_inputs())
    model.set_vocabulary(vocab)
    _, probs, _ = tool.run_precision(model, x, 'fp32')
    with torch.no_grad():
        np.testing.assert_array_equal(probs.numpy(), model.inference(x).numpy())
