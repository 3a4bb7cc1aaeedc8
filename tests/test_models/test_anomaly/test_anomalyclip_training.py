"""AnomalyCLIP through tools/train.py and tools/test.py with a tiny random CLIP on generated data.

Prompts are learned on one generated MVTec-layout dataset (scikit-image brick / grass with pasted
defects) from the shipped training config, and the weights-only checkpoint is evaluated zero-shot with
the shipped evaluation config on another (gravel / moon, other seed). Only the CLIP is swapped for a
tiny random one (64 px, 2 vision and 2 text blocks) and the depths scaled down to match.
"""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ovseg.apis import load_model_weights
from ovseg.datasets.anomaly import make_mvtec_like
from ovseg.evaluation.anomaly import METRIC_NAMES
from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_clip_arch

REPO = Path(__file__).resolve().parents[3]
TRAIN_CATEGORIES = ('brick', 'grass')
TEST_CATEGORIES = ('gravel', 'moon')
NUM_TRAIN = 8  # one batch holds the whole training set: the loss of every iteration is comparable
HEAD = dict(n_ctx=4, text_depth=2, text_n_ctx=2, features=(1, 2), vv_blocks=1)




def tiny_arch():
    arch = tiny_clip_arch('vit')
    arch['text_cfg']['layers'] = 2  # room for one deep prompt set
    return arch


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    train = tmp_path_factory.mktemp('ac_train')
    test = tmp_path_factory.mktemp('ac_test')
    make_mvtec_like(str(train), TRAIN_CATEGORIES, num_good=2, num_defect=2, size=96, seed=0)
    make_mvtec_like(str(test), TEST_CATEGORIES, num_good=3, num_defect=3, size=96, seed=1)
    return train, test


def _pipeline(train):
    resize = "dict(type='Resize', scale=(64, 64), keep_ratio=False, interpolation='bicubic', backend='pillow')"
    steps = ["dict(type='LoadImageFromFile')"]
    steps += ["dict(type='LoadAnomalyMask')", resize] if train else [resize, "dict(type='LoadAnomalyMask')"]
    steps.append("dict(type='PackSegInputs', meta_keys={{_base_.anomaly_meta_keys}})")
    return '[' + ', '.join(steps) + ']'


def _model_override(train):
    size = ', data_preprocessor=dict(size=(64, 64))' if train else ''
    return (f"model = dict(backbone=dict(_delete_=True, type='OpenCLIPBackbone', arch={tiny_arch()!r}), "
            f"head={HEAD!r}{size})")


def write_train_config(path, root):
    lines = [f"_base_ = [{str(REPO / 'configs/anomaly/anomalyclip_vit-l14-336_train-mvtec.py')!r}]",
             _model_override(True),
             f'train_dataloader = dict(batch_size={NUM_TRAIN}, num_workers=0, persistent_workers=False,',
             f'                        dataset=dict(data_root={str(root)!r}, pipeline={_pipeline(True)}))',
             'optim_wrapper = dict(optimizer=dict(lr=1e-2))',
             'train_cfg = dict(max_epochs=6)',
             'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=6))']
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def write_test_config(path, root):
    lines = [f"_base_ = [{str(REPO / 'configs/anomaly/anomalyclip_vit-l14-336_mvtec.py')!r}]",
             _model_override(False),
             'test_dataloader = dict(num_workers=0, persistent_workers=False,',
             f'                       dataset=dict(data_root={str(root)!r}, pipeline={_pipeline(False)}))',
             'test_evaluator = dict(eval_size=(64, 64))',
             'default_hooks = dict(logger=dict(interval=1))']
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_anomalyclip_train_then_zero_shot_test(tmp_path, roots):
    train_root, test_root = roots
    work = tmp_path / 'train'
    load_tool('train').main([write_train_config(tmp_path / 'ac_train.py', train_root), '--work-dir', str(work)])
    ckpt_path = work / 'epoch_6.pth'
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)  # no allowlist needed
    losses = ckpt['message_hub']['log_scalars']['train/loss']['log_history'].tolist()
    assert len(losses) == 6 and losses[-1] < losses[0] and np.mean(losses[3:]) < np.mean(losses[:3])
    for key in ('loss_image', 'loss_focal', 'loss_dice'):
        assert f'train/{key}' in ckpt['message_hub']['log_scalars']
    state = ckpt['state_dict']
    learned = sorted(k for k in state if k.startswith('head.'))
    assert learned == ['head.prompt_learner.compound_prompts_text.0', 'head.prompt_learner.ctx_neg',
                       'head.prompt_learner.ctx_pos']

    work_test = tmp_path / 'test'
    metrics = load_tool('test').main([write_test_config(tmp_path / 'ac_test.py', test_root), str(ckpt_path),
                                      '--work-dir', str(work_test)])
    for name in METRIC_NAMES:
        per_category = [metrics[f'{c}/{name}'] for c in TEST_CATEGORIES]
        assert np.isfinite(per_category).all() and metrics[name] == pytest.approx(np.mean(per_category)), name
    report = json.loads(next(work_test.rglob('anomaly_metrics.json')).read_text())
    assert sorted(report['categories']) == list(TEST_CATEGORIES)


def test_anomalyclip_segmentor_loss_and_predict():
    """Segmentor: text width from the backbone, loss terms with gradients on the prompts only, predict."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg = dict(type='AnomalyCLIPSegmentor', backbone=dict(type='OpenCLIPBackbone', arch=tiny_arch()),
               head=dict(type='AnomalyCLIPHead', **HEAD),
               data_preprocessor=dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3))
    import ovseg.models.anomaly.anomalyclip  # noqa: F401  registers the segmentor
    model = MODELS.build(cfg)
    assert model.head.prompt_learner.ctx_pos.shape == (1, 1, 4, 32)
    images = torch.randn(2, 3, 64, 64)
    samples = []
    for label in (0, 1):
        mask = torch.zeros(1, 64, 64, dtype=torch.long)
        mask[:, 20:30, 20:30] = label
        samples.append(SegDataSample(metainfo=dict(anomaly_label=label), gt_sem_seg=PixelData(data=mask)))
    losses = model.loss(images, samples)
    assert sorted(losses) == ['loss_dice', 'loss_focal', 'loss_image']
    sum(losses.values()).backward()
    assert model.head.prompt_learner.ctx_pos.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())
    results = model.predict(images, [SegDataSample(metainfo=dict(category='any')) for _ in range(2)])
    assert results[0].anomaly_map.data.shape == (1, 64, 64) and 0 <= float(results[0].pred_score) <= 1
    with pytest.raises(ValueError, match='text_width'):
        MODELS.build(dict(cfg, head=dict(type='AnomalyCLIPHead', text_width=64, **HEAD)))


def test_anomalyclip_official_checkpoint_converter(tmp_path):
    """An original ``{'prompt_learner': ...}`` file converts to keys tools/test.py loads (weights-only)."""
    import ovseg.models.anomaly.anomalyclip  # noqa: F401  registers the segmentor
    spec = importlib.util.spec_from_file_location('ovseg_anomalyclip_converter',
                                                  REPO / 'tools/model_converters/anomalyclip_to_ovseg.py')
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    model = MODELS.build(dict(type='AnomalyCLIPSegmentor', backbone=dict(type='OpenCLIPBackbone', arch=tiny_arch()),
                              head=dict(type='AnomalyCLIPHead', **HEAD)))
    learner = {k: torch.randn_like(v).half() if k.startswith('ctx') else torch.randn_like(v)
               for k, v in model.head.prompt_learner.state_dict().items()}
    learner.update({'compound_prompt_projections.0.weight': torch.zeros(896, 32),
                    'token_prefix_pos': torch.zeros(1, 1, 1, 32), 'tokenized_prompts_pos': torch.zeros(1, 1, 77)})
    torch.save({'prompt_learner': learner}, tmp_path / 'epoch_15.pth')
    assert converter.main([str(tmp_path / 'epoch_15.pth'), str(tmp_path / 'out.pth')]) == 0
    omitted = load_model_weights(model, str(tmp_path / 'out.pth'), allow_missing_frozen=True)
    assert omitted and all(k.startswith('backbone.') for k in omitted)
    torch.testing.assert_close(model.head.prompt_learner.ctx_pos, learner['ctx_pos'].float())
    with pytest.raises(KeyError, match='unknown keys'):
        converter.convert({'ctx_pos': torch.zeros(1), 'ctx_neg': torch.zeros(1), 'other': torch.zeros(1)})


def test_anomalyclip_smoothing_and_losses():
    """The torch Gaussian equals scipy's gaussian_filter; perfect maps give zero dice loss."""
    from scipy.ndimage import gaussian_filter

    from ovseg.models.anomaly.anomalyclip import binary_dice_loss, gaussian_filter2d, probability_focal_loss
    maps = torch.rand(2, 20, 30)
    expected = np.stack([gaussian_filter(m, sigma=4) for m in maps.numpy()])
    np.testing.assert_allclose(gaussian_filter2d(maps, 4).numpy(), expected, atol=1e-6, rtol=0)
    gt = (torch.rand(2, 8, 8) > 0.5).float()
    assert float(binary_dice_loss(gt, gt)) == pytest.approx(0.0, abs=1e-6)
    probs = torch.stack([1 - gt, gt], dim=1)
    assert float(probability_focal_loss(probs, gt)) < 1e-6 < float(probability_focal_loss(probs.flip(1), gt))
