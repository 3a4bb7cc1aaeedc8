"""SAM 3 text prompts and SAM3Segmentor: ovseg's batched prompts and its fusion rule equal transformers'
own Sam3Model and Sam3Processor outputs, run prompt by prompt on the same image (a tiny random SAM 3).

Tolerances: ovseg encodes the image once and runs P prompts as one batch against the expanded encoding;
transformers runs each prompt with its own image pass. The float outputs then differ only by the
rounding of batched reductions, bounded by the float32 model of :mod:`ovseg.testing.tolerance` for the
prompt-conditioned part of the tiny SAM 3: depth 8 (text encoder, DETR encoder and decoder layers with
their attention and MLP stages, the pixel decoder, the mask and semantic heads), width 1024 (the 32 x 32
pixel-embedding map the mask heads read, the longest reduction). Score maps are probabilities (scale 1);
kept queries, argmax labels and binary masks are compared away from near ties of those tolerances.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ovseg.models.backbones import WeightsUnavailableError
from ovseg.models.proposals import SAM3TextPrompter, build_sam3_config, hf_weights
from ovseg.models.segmentors import SAM3Segmentor
from ovseg.models.segmentors.sam3_segmentor import fuse_prompt_maps
from ovseg.registry import MODELS
from ovseg.testing import (assert_close, assert_equal_away_from_ties, threshold_margin, tolerance_for,
                           top2_margin)
from ovseg.testing.sam_hf import tiny_sam3, tiny_sam3_cfg

transformers = pytest.importorskip('transformers')
DEPTH, WIDTH = 8, 1024  # module docstring
VOCABULARY = ['cat|kitten', 'traffic light', 'grass']
PROMPTS = ['cat', 'kitten', 'traffic light', 'grass']
PROMPT_CLASS = [0, 0, 1, 2]


@pytest.fixture(scope='module')
def prompter():
    return tiny_sam3()


@pytest.fixture(scope='module')
def image():
    return np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def expected(prompter, image):
    """transformers' path, one prompt at a time: Sam3Processor (image + text) then Sam3Model."""
    outs = []
    for prompt in PROMPTS:
        inputs = prompter.processor(images=image, text=prompt, return_tensors='pt')
        with torch.no_grad():
            outs.append(prompter.model(pixel_values=inputs['pixel_values'], input_ids=inputs['input_ids'],
                                       attention_mask=inputs['attention_mask']))
    return outs


def stacked(outs, name):
    return torch.cat([getattr(o, name) for o in outs])


def reference_map(out, size, threshold):
    """SegEarth-OV3's loop for one prompt (earth-insights/SegEarth-OV-3 segearthov3_segmentor.py), written
    query by query on transformers' outputs: max over kept queries of sigmoid(up(mask)) * score, max with
    sigmoid(up(semantic)), times the presence score."""
    presence = out.presence_logits[0, 0].sigmoid()
    scores = out.pred_logits[0].sigmoid() * presence
    fused = torch.zeros(size)
    for q in range(scores.shape[0]):
        if scores[q] > threshold:
            mask = F.interpolate(out.pred_masks[0, q][None, None], size, mode='bilinear', align_corners=False)
            fused = torch.max(fused, mask[0, 0].sigmoid() * scores[q])
    semantic = F.interpolate(out.semantic_seg, size, mode='bilinear', align_corners=False)[0, 0].sigmoid()
    return torch.max(fused, semantic) * presence


def test_registered_and_checked(prompter):
    assert MODELS.get('SAM3TextPrompter') is SAM3TextPrompter and MODELS.get('SAM3Segmentor') is SAM3Segmentor
    assert not any(p.requires_grad for p in prompter.parameters())
    with pytest.raises(ValueError, match='Unknown SAM 3 arch'):
        build_sam3_config('sam4')
    with pytest.raises(ValueError, match='multiple of 14'):
        build_sam3_config('tiny', 100)
    with pytest.raises(ValueError, match='non-empty'):
        prompter.encode_text(['cat', ' '])
    with pytest.raises(ValueError, match="'whole'"):
        SAM3Segmentor(sam3=prompter, test_cfg=dict(mode='slide'))


def test_release_size_config():
    """'sam3' is transformers' default Sam3Config, the released model: a 1008 x 1008 input, 14-pixel patches,
    200 queries and 288 x 288 masks (72 x 72 ViT grid x 4)."""
    config = build_sam3_config('sam3')
    assert config.vision_config.backbone_config.image_size == 1008
    assert config.vision_config.backbone_config.patch_size == 14
    assert config.detr_decoder_config.num_queries == 200


def test_batched_prompts_equal_transformers(prompter, image, expected):
    encoded = prompter.embed_image(image)
    ours = prompter.predict(encoded, prompter.encode_text(PROMPTS))
    for name, scale in (('pred_masks', None), ('pred_logits', None), ('presence_logits', None),
                        ('semantic_seg', None), ('pred_boxes', 1.0)):
        assert_close(getattr(ours, name), stacked(expected, name), depth=DEPTH, width=WIDTH, scale=scale,
                     name=name)


@pytest.mark.parametrize('threshold', [0.2, 0.5])  # 0.5 (the default) keeps no query of random weights
def test_fusion_rule_equals_segearth_reference(prompter, image, expected, threshold):
    seg = SAM3Segmentor(sam3=prompter, vocabulary=VOCABULARY, confidence_threshold=threshold, prompt_batch=3)
    scores, instances = seg.segment_image(image)
    maps = torch.stack([reference_map(o, (48, 80), threshold) for o in expected])
    ref = torch.stack([maps[[i for i, c in enumerate(PROMPT_CLASS) if c == k]].amax(0) for k in range(3)])
    assert scores.shape == (3, 48, 80) and scores.dtype == torch.float32
    assert_close(scores, ref, depth=DEPTH, width=WIDTH, scale=1.0, name='class scores')
    tol = tolerance_for(ref, DEPTH, WIDTH, scale=1.0)
    assert_equal_away_from_ties(scores.argmax(0), ref.argmax(0), top2_margin(ref), tol, name='prediction')
    # kept queries: SAM 3's own post-processing picks the same ones with the same scores and boxes
    post_process = prompter.processor.post_process_instance_segmentation
    post = [post_process(o, threshold=threshold, target_sizes=[(48, 80)])[0] for o in expected]
    all_scores = torch.cat([(o.pred_logits.sigmoid() * o.presence_logits.sigmoid()).flatten()
                            for o in expected])
    assert threshold_margin(all_scores, threshold).min() > tol  # no query at the threshold
    assert len(instances['scores']) == sum(len(p['scores']) for p in post)
    if threshold < 0.5:
        assert len(instances['scores']) > 0
    assert_close(instances['scores'], torch.cat([p['scores'] for p in post]), depth=DEPTH, width=WIDTH,
                 scale=1.0, name='instance scores')
    assert_close(instances['boxes'] * torch.tensor([80, 48, 80, 48]), torch.cat([p['boxes'] for p in post]),
                 depth=DEPTH, width=WIDTH, scale=80.0, name='boxes')
    labels = [PROMPT_CLASS[i] for i, p in enumerate(post) for _ in range(len(p['scores']))]
    assert instances['labels'].tolist() == labels


def test_rule_switches_synonyms_and_background(prompter, image, expected):
    seg = SAM3Segmentor(sam3=prompter, vocabulary=['background', 'cat|kitten'], use_instances=False,
                        use_presence=False, synonyms='first', background=dict(thresh=0.9))
    assert seg.prompts == ('background', 'cat') and seg.background_index == 0
    scores, _ = seg.segment_image(image)
    semantic = F.interpolate(expected[0].semantic_seg, (48, 80), mode='bilinear', align_corners=False)[0, 0]
    cat = semantic.sigmoid()
    assert_close(scores[1], cat, depth=DEPTH, width=WIDTH, scale=1.0, name='semantic-only map')
    # where no class reaches the threshold the background class wins (SegEarth-OV3's prob_thd): its score
    # becomes 1 there; elsewhere the argmax decides
    low = scores[1] < 0.9
    assert (scores.argmax(0)[low] == 0).all() and (scores[0] == 1).any()
    with pytest.raises(ValueError, match="class named 'background'"):
        SAM3Segmentor(sam3=prompter, vocabulary=['cat'], background=dict(thresh=0.5))


def test_image_encoded_once_text_once_per_vocabulary(prompter, image):
    seg = SAM3Segmentor(sam3=prompter, vocabulary=VOCABULARY, prompt_batch=1)
    calls = dict(vision=0, text=0)
    def counter(key):
        return lambda *args: calls.__setitem__(key, calls[key] + 1)

    hooks = [prompter.model.vision_encoder.register_forward_hook(counter('vision')),
             prompter.model.text_encoder.register_forward_hook(counter('text'))]
    try:
        seg.segment_image(image)
        seg.segment_image(image[:, ::-1].copy())
        assert calls == dict(vision=2, text=1)
        seg.set_vocabulary(['dog'])
        seg.segment_image(image)
        assert calls == dict(vision=3, text=2)
    finally:
        for hook in hooks:
            hook.remove()


def test_predict_packs_semantic_and_instances(prompter, image):
    from mmseg.structures import SegDataSample
    seg = MODELS.build(tiny_sam3_cfg(VOCABULARY, confidence_threshold=0.2))
    seg.sam3 = prompter
    inputs = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # the preprocessor's RGB output
    sample = SegDataSample(metainfo=dict(img_shape=(48, 80), ori_shape=(96, 160)))
    result = seg.predict(inputs, [sample])[0]
    scores, instances = seg.segment_image(image)
    up = F.interpolate(scores[None], (96, 160), mode='bilinear', align_corners=False)[0]
    assert_close(result.seg_logits.data, up, depth=DEPTH, width=WIDTH, scale=1.0, name='packed scores')
    inst = result.pred_instances
    assert inst.masks.shape == (len(instances['scores']), 96, 160) and inst.masks.dtype == torch.bool
    assert torch.equal(inst.labels, instances['labels'])
    assert_close(inst.bboxes, instances['boxes'] * torch.tensor([160, 96, 160, 96]), scale=160.0,
                 name='bboxes')


def test_bf16_runs_sam3_and_keeps_the_rule_in_float32(prompter, image):
    seg = SAM3Segmentor(sam3=prompter, vocabulary=VOCABULARY, precision='bf16')
    scores, _ = seg.segment_image(image)
    fp32, _ = SAM3Segmentor(sam3=prompter, vocabulary=VOCABULARY).segment_image(image)
    assert scores.dtype == torch.float32 and scores.shape == fp32.shape
    assert (scores - fp32).abs().max() < 0.1  # bf16 keeps 8 mantissa bits: a loose sanity bound only


def test_fuse_handles_no_prompt_output_kept():
    outputs = type('Out', (), dict(presence_logits=torch.zeros(2, 1), pred_logits=torch.full((2, 3), -9.0),
                                   pred_masks=torch.zeros(2, 3, 4, 4), semantic_seg=torch.zeros(2, 1, 4, 4),
                                   pred_boxes=torch.zeros(2, 3, 4)))
    maps, kept = fuse_prompt_maps(outputs, (8, 8))
    assert len(kept['scores']) == 0 and kept['mask_logits'].shape == (0, 8, 8)
    assert torch.allclose(maps, torch.full((2, 8, 8), 0.25))  # sigmoid(0) * sigmoid(0)


def test_local_folder_weights_and_offline_message(prompter, tmp_path, monkeypatch, image):
    folder = tmp_path / 'sam3_tiny'
    prompter.model.save_pretrained(folder)
    prompter.processor.save_pretrained(folder)
    loaded = SAM3TextPrompter(pretrained=str(folder))
    text = loaded.encode_text(PROMPTS)
    assert torch.equal(text.features, prompter.encode_text(PROMPTS).features)
    monkeypatch.setattr(hf_weights, 'hub_reachable', lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match='cannot be downloaded'):
        SAM3TextPrompter(pretrained='ovseg-tests/not-a-cached-sam3')
