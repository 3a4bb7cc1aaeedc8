"""AdaptCLIP through tools/train.py and tools/test.py with a tiny random CLIP on generated data, and its
checkpoint converter.

The adapters are trained with the shipped training config on one generated MVTec-layout dataset
(scikit-image brick / grass with pasted defects, normal training images as the references' pool), and the
weights-only checkpoint is evaluated zero-shot and 1-shot with the shipped configs on another (gravel /
moon, other seed). Only the CLIP is swapped for a tiny random one (64 px, 2 vision and 1 text blocks) and
the adapter sizes scaled down to match.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from ovseg.apis import load_model_weights
from ovseg.datasets.anomaly import make_mvtec_like
from ovseg.evaluation.anomaly import METRIC_NAMES
from ovseg.registry import MODELS
from ovseg.testing import CLIP_MEAN_255, CLIP_STD_255, load_tool, tiny_clip_arch

REPO = Path(__file__).resolve().parents[3]
TRAIN_CATEGORIES = ('brick', 'grass')
TEST_CATEGORIES = ('gravel', 'moon')
NUM_TRAIN = 8  # one batch holds the whole training set: the loss of every iteration is comparable
HEAD = dict(n_ctx=4, features=(1, 2), vv_blocks=1, pq_mid_dim=8, pq_topk=3)
RESIZE = "dict(type='Resize', scale=(64, 64), keep_ratio=False, interpolation='bicubic', backend='pillow')"
PACK = "dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}})"


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    train = tmp_path_factory.mktemp('adapt_train')
    test = tmp_path_factory.mktemp('adapt_test')
    make_mvtec_like(str(train), TRAIN_CATEGORIES, num_good=2, num_defect=2, size=96, seed=0, num_train=3)
    make_mvtec_like(str(test), TEST_CATEGORIES, num_good=3, num_defect=3, size=96, seed=1, num_train=2)
    return train, test


def _model_override(train):
    size = ', data_preprocessor=dict(size=(64, 64))' if train else ''
    refs = f"[dict(type='LoadImageFromFile'), {RESIZE}, {PACK}]"
    return (f"model = dict(backbone=dict(_delete_=True, type='OpenCLIPBackbone', arch={tiny_clip_arch('vit')!r}), "
            f"head={HEAD!r}, reference_pipeline={refs}{size})")


def write_train_config(path, root):
    pipeline = f"[dict(type='LoadImageFromFile'), dict(type='LoadAnomalyMask'), {RESIZE}, {PACK}]"
    lines = [f"_base_ = [{str(REPO / 'configs/anomaly/adaptclip_vit-l14-336_train-mvtec.py')!r}]",
             _model_override(True),
             f'train_dataloader = dict(batch_size={NUM_TRAIN}, num_workers=0, persistent_workers=False,',
             f'                        dataset=dict(data_root={str(root)!r}, pipeline={pipeline}))',
             'optim_wrapper = dict(optimizer=dict(lr=1e-2))',
             'train_cfg = dict(max_epochs=6)',
             'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=6))']
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def write_test_config(path, leaf, root):
    pipeline = f"[dict(type='LoadImageFromFile'), {RESIZE}, dict(type='LoadAnomalyMask'), {PACK}]"
    lines = [f"_base_ = [{str(REPO / 'configs/anomaly' / leaf)!r}]",
             _model_override(False),
             'test_dataloader = dict(num_workers=0, persistent_workers=False,',
             f'                       dataset=dict(data_root={str(root)!r}, pipeline={pipeline}))',
             'test_evaluator = dict(eval_size=(64, 64))',
             'default_hooks = dict(logger=dict(interval=1))']
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_adaptclip_train_then_zero_and_few_shot_test(tmp_path, roots):
    train_root, test_root = roots
    work = tmp_path / 'train'
    load_tool('train').main([write_train_config(tmp_path / 'adapt_train.py', train_root), '--work-dir', str(work)])
    ckpt_path = work / 'epoch_6.pth'
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    losses = ckpt['message_hub']['log_scalars']['train/loss']['log_history'].tolist()
    assert len(losses) == 6 and losses[-1] < losses[0] and np.mean(losses[3:]) < np.mean(losses[:3])
    for key in ('loss_image', 'loss_focal', 'loss_dice'):
        assert f'train/{key}' in ckpt['message_hub']['log_scalars']
    learned = {k.split('.')[1] for k in ckpt['state_dict'] if k.startswith('head.')}
    assert learned == {'textual_adapter', 'visual_adapter', 'pq_adapter'}

    for leaf in ('adaptclip_vit-l14-336_mvtec.py', 'adaptclip_vit-l14-336_1shot_mvtec.py'):
        work_test = tmp_path / leaf
        metrics = load_tool('test').main([write_test_config(tmp_path / f'test_{leaf}', leaf, test_root),
                                          str(ckpt_path), '--work-dir', str(work_test)])
        for name in METRIC_NAMES:
            per_category = [metrics[f'{c}/{name}'] for c in TEST_CATEGORIES]
            assert np.isfinite(per_category).all() and metrics[name] == pytest.approx(np.mean(per_category)), name
        report = json.loads(next(work_test.rglob('anomaly_metrics.json')).read_text())
        assert sorted(report['categories']) == list(TEST_CATEGORIES)


def _segmentor():
    import ovseg.models.anomaly.adaptclip  # noqa: F401  registers the segmentor
    pre = dict(type='SegDataPreProcessor', mean=CLIP_MEAN_255, std=CLIP_STD_255, bgr_to_rgb=True)
    return MODELS.build(dict(type='AdaptCLIPSegmentor', data_preprocessor=pre,
                             backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit')),
                             head=dict(type='AdaptCLIPHead', **HEAD)))


def test_adaptclip_head_loss_and_scores():
    """Widths from the backbone, gradients on the adapters only, zero- and few-shot outputs in range."""
    torch.manual_seed(0)
    model = _segmentor()
    head, backbone = model.head, model.backbone
    assert head.textual_adapter.ctx_pos.shape == (1, 1, 4, 32)
    images, refs = torch.randn(2, 3, 64, 64), torch.randn(2, 1, 3, 64, 64)
    gt = torch.zeros(2, 64, 64)
    gt[1, 20:30, 20:30] = 1
    losses = head.loss(backbone, images, refs, gt, torch.tensor([0, 1]))
    assert sorted(losses) == ['loss_dice', 'loss_focal', 'loss_image']
    sum(losses.values()).backward()
    for part in (head.textual_adapter, head.visual_adapter, head.pq_adapter):
        assert all(p.grad is not None for p in part.parameters())
    assert all(p.grad is None for p in backbone.parameters())
    model.eval()
    memory = model.build_memory(refs[:, 0])
    for mem in (None, memory):
        out = head(backbone, images, memory=mem)
        assert out['anomaly_map'].shape == (2, 64, 64)
        assert ((out['image_scores'] >= 0) & (out['image_scores'] <= 1)).all()
    samples = [SegDataSample(metainfo=dict(category='any'), gt_sem_seg=PixelData(data=torch.zeros(1, 64, 64)))]
    with pytest.raises(ValueError, match='references=dict'):
        model.loss(images[:1], samples)
    with pytest.raises(ValueError, match='embed_dim'):
        MODELS.build(dict(type='AdaptCLIPSegmentor',
                          backbone=dict(type='OpenCLIPBackbone', arch=tiny_clip_arch('vit')),
                          head=dict(type='AdaptCLIPHead', embed_dim=64, **HEAD)))


def test_adaptclip_checkpoint_converter(tmp_path):
    """An original ``{'textual_learner', 'visual_learner', 'pq_learner'}`` file converts to keys tools/test.py
    loads; an unknown key is named and exits 2."""
    converter = load_tool('model_converters/adaptclip_to_ovseg')
    model = _segmentor()
    head = {k[len('head.'):]: torch.randn_like(v) if v.is_floating_point() else v
            for k, v in model.state_dict().items() if k.startswith('head.')}
    original = {'textual_learner': {k.split('.', 1)[1]: v for k, v in head.items()
                                    if k.startswith('textual_adapter.')},
                'visual_learner': {k.split('.', 1)[1].replace('local_adapter', 'local_adater'): v
                                   for k, v in head.items() if k.startswith('visual_adapter.')},
                'pq_learner': {}}
    for key, value in head.items():
        if key.startswith('pq_adapter.sharebn.'):
            original['pq_learner'][key.split('.', 1)[1]] = value
        elif key.startswith('pq_adapter.'):
            module, rest = key.split('.', 2)[1:]
            for i in range(len(HEAD['features'])):  # the shared head, once per tapped layer
                original['pq_learner'][f'{module}.{i}.{rest}'] = value
    original['textual_learner']['token_prefix_pos'] = torch.zeros(1, 1, 1, 32)
    torch.save(original, tmp_path / 'epoch_15.pth')
    assert converter.main([str(tmp_path / 'epoch_15.pth'), str(tmp_path / 'out.pth')]) == 0
    omitted = load_model_weights(model, str(tmp_path / 'out.pth'), allow_missing_frozen=True)
    assert omitted and all(k.startswith('backbone.') for k in omitted)
    for key, value in head.items():
        torch.testing.assert_close(model.state_dict()[f'head.{key}'].float(), value.float())

    original['visual_learner']['extra.weight'] = torch.zeros(1)
    torch.save(original, tmp_path / 'bad.pth')
    assert converter.main([str(tmp_path / 'bad.pth'), str(tmp_path / 'bad_out.pth')]) == 2
    del original['visual_learner']['extra.weight']
    shared = original['pq_learner']
    shared['local_adapter.1.0.weight'] = torch.ones_like(shared['local_adapter.1.0.weight'])
    with pytest.raises(converter.NotAdaptCLIP, match='not shared'):
        converter.convert(original)


def test_adaptclip_learned_text_cached_until_the_prompts_change():
    model = _segmentor().eval()
    head, backbone = model.head, model.backbone
    with torch.no_grad():
        first = head.learned_text(backbone)
        assert head.learned_text(backbone) is first  # reused
        head.textual_adapter.ctx_pos.add_(1.0)  # an in-place change (optimiser step, load_state_dict)
        second = head.learned_text(backbone)
    assert second is not first and not torch.allclose(second, first)
    with_grad = head.learned_text(backbone)
    assert with_grad.requires_grad and with_grad is not second
