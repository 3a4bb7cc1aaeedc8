"""CLIP-DINOiser training: teachers, losses, the image-folder dataset, configs and tools on tiny models.

Tiny teachers are timm ViTs (width 32, 2 blocks) whose weights are written to tmp files in the official
layouts, so every test also goes through the weights-only checkpoint loading.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from PIL import Image

import ovseg  # noqa: F401  registers the models
from ovseg.datasets.image_folder import BrightnessJitter, ImageFolderDataset, list_images
from ovseg.models.refiners.dinoiser_teachers import (CLIP_MEAN_255, CLIP_STD_255, IMAGENET_MEAN,
                                                     IMAGENET_STD, DINOCorrelationTeacher,
                                                     FOUNDSaliencyTeacher, build_teacher_vit)
from ovseg.registry import MODELS
from ovseg.testing import load_tool, tiny_maskclip_cfg

REPO = Path(__file__).resolve().parents[3]
TINY_VIT = dict(embed_dim=32, depth=2, num_heads=2, img_size=64)
DATASETS = ('voc21', 'voc20', 'pc60', 'pc59', 'coco_object81', 'coco_stuff171', 'cityscapes19', 'ade150')


@pytest.fixture(scope='module')
def teacher_files(tmp_path_factory):
    """Tiny teacher weights in official layouts: DINO (plain), FOUND ViT (DINO full checkpoint), decoder."""
    root = tmp_path_factory.mktemp('teachers')
    torch.manual_seed(1)
    dino = build_teacher_vit('vit_base_patch16_224', TINY_VIT).state_dict()
    torch.save(dino, root / 'dino.pth')
    found_vit = build_teacher_vit('vit_small_patch8_224', TINY_VIT).state_dict()
    full = {f'module.backbone.{k}': v for k, v in found_vit.items()}
    full['module.head.mlp.0.weight'] = torch.zeros(4, 32)  # DINO projection head: dropped on load
    torch.save({'teacher': full, 'epoch': 300}, root / 'found_vit.pth')
    decoder = {'weight': torch.randn(1, 32, 1, 1), 'bias': torch.tensor([0.1])}
    torch.save({'decoder': decoder}, root / 'decoder.pt')
    return dict(dino=str(root / 'dino.pth'), found_vit=str(root / 'found_vit.pth'),
                decoder=str(root / 'decoder.pt'), dino_state=dino, decoder_state=decoder)


def teacher_cfgs(files):
    return (dict(type='DINOCorrelationTeacher', checkpoint=files['dino'], vit_cfg=TINY_VIT),
            dict(type='FOUNDSaliencyTeacher', checkpoint=files['found_vit'],
                 decoder_checkpoint=files['decoder'], vit_cfg=TINY_VIT))


def refiner_cfg(files=None):
    """Tiny CLIP-DINOiser refiner on the tiny CLIP's first block (with teachers when ``files``)."""
    cfg = dict(type='CLIPDINOiserRefiner', in_channels=32, proj_channels=8, token_layer='resblocks.-2.ln_2')
    if files is not None:
        cfg['teacher'], cfg['saliency_teacher'] = teacher_cfgs(files)
    return cfg


def tiny_segmentor_cfg(files=None, size=64):
    preprocessor = dict(type='SegDataPreProcessor', mean=list(CLIP_MEAN_255), std=list(CLIP_STD_255),
                        bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(size, size))
    return tiny_maskclip_cfg(('cat', 'dog', 'grass'), mode='slide', refiner=refiner_cfg(files),
                             data_preprocessor=preprocessor)


def make_images(n, size=64, seed=0):
    """(n, 3, size, size) uint8 images with a few flat regions, so teachers see structure."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 3, size, size), np.uint8)
    for i in range(n):
        imgs[i] = rng.integers(0, 256, (3, 1, 1))
        y, x = rng.integers(8, size - 24, 2)
        imgs[i, :, y:y + 24, x:x + 24] = rng.integers(0, 256, (3, 1, 1))
    return torch.from_numpy(imgs)


def clip_normalise(imgs):
    mean = torch.tensor(CLIP_MEAN_255).view(1, 3, 1, 1)
    return (imgs.float() - mean) / torch.tensor(CLIP_STD_255).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------------ teachers
def test_teachers_load_weights_shapes_binary_and_frozen(teacher_files):
    dino_cfg, found_cfg = teacher_cfgs(teacher_files)
    dino, found = MODELS.build(dino_cfg), MODELS.build(found_cfg)
    assert torch.equal(dino.vit.state_dict()['blocks.1.attn.qkv.weight'],
                       teacher_files['dino_state']['blocks.1.attn.qkv.weight'])
    assert torch.equal(found.decoder.weight, teacher_files['decoder_state']['weight'])
    x = clip_normalise(make_images(2, size=64))
    corr = dino.correlations(x, (4, 4))
    target = dino(x, (4, 4))
    assert corr.shape == target.shape == (2, 16, 16)
    assert torch.allclose(corr, corr.transpose(1, 2), atol=1e-5)
    assert torch.allclose(corr.diagonal(dim1=1, dim2=2), torch.ones(2, 16), atol=1e-5)
    assert torch.equal(target, (corr >= 0.2).float())
    saliency = found(x, (4, 4))  # FOUND's 8x8 grid (patch 8) resized to the CLIP grid
    assert saliency.shape == (2, 1, 4, 4) and set(saliency.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(saliency, (found.saliency(x, (4, 4)) > 0.5).float())
    for teacher in (dino, found):
        teacher.train()
        assert not teacher.training and not any(m.training for m in teacher.modules())
        assert not any(p.requires_grad for p in teacher.parameters())
    assert not target.requires_grad and not saliency.requires_grad


def test_teacher_converts_clip_to_imagenet_normalisation():
    teacher = DINOCorrelationTeacher(vit_cfg=TINY_VIT, allow_random=True)
    pixel = torch.tensor([10.0, 128.0, 250.0]).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    got = teacher.to_imagenet(clip_normalise(pixel))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    want = (pixel / 255.0 - mean) / std
    assert torch.allclose(got, want, atol=1e-5)
    assert teacher.to_imagenet(torch.zeros(1, 3, 20, 30)).shape[-2:] == (32, 32)  # padded to the patch


def test_teacher_resizes_features_to_the_clip_grid():
    teacher = DINOCorrelationTeacher(arch='vit_small_patch8_224', vit_cfg=TINY_VIT, allow_random=True)
    x = clip_normalise(make_images(1))
    assert teacher.last_qkv(x, 'v').shape == (1, 32, 8, 8)
    assert teacher(x, (4, 4)).shape == (1, 16, 16)


def test_teacher_checkpoint_errors_name_keys_and_paths(tmp_path, teacher_files):
    state = dict(teacher_files['dino_state'])
    state['blocks.0.attn.wrong.weight'] = state.pop('blocks.0.attn.qkv.weight')
    torch.save(state, tmp_path / 'renamed.pth')
    with pytest.raises(KeyError, match=r"missing keys \['blocks\.0\.attn\.qkv\.weight'\].*"
                                       r"unexpected keys \['blocks\.0\.attn\.wrong\.weight'\]"):
        DINOCorrelationTeacher(checkpoint=str(tmp_path / 'renamed.pth'), vit_cfg=TINY_VIT)
    torch.save({'decoder': {'conv.weight': torch.zeros(1, 32, 1, 1)}}, tmp_path / 'bad_decoder.pt')
    with pytest.raises(KeyError, match=r"missing keys \['bias', 'weight'\].*unexpected keys \['conv\.weight"):
        FOUNDSaliencyTeacher(checkpoint=teacher_files['found_vit'], vit_cfg=TINY_VIT,
                             decoder_checkpoint=str(tmp_path / 'bad_decoder.pt'))
    with pytest.raises(FileNotFoundError, match=r'model\.refiner\.teacher\.checkpoint is not set'):
        DINOCorrelationTeacher(vit_cfg=TINY_VIT)
    with pytest.raises(FileNotFoundError, match=r'decoder_checkpoint = .*nowhere\.pt. does not exist'):
        FOUNDSaliencyTeacher(checkpoint=teacher_files['found_vit'], decoder_checkpoint='nowhere.pt',
                             vit_cfg=TINY_VIT)


# ------------------------------------------------------------------------------------------ refiner
def test_teachers_stay_out_of_state_dict_and_inference(teacher_files):
    trained = MODELS.build(refiner_cfg(teacher_files))
    plain = MODELS.build(refiner_cfg())
    assert sorted(trained.state_dict()) == sorted(plain.state_dict()) == [
        'bkg_decoder.bias', 'bkg_decoder.weight', 'obj_proj.bias', 'obj_proj.weight']
    assert trained.teacher is not None and plain.teacher is None
    plain.load_state_dict(trained.state_dict())
    seg = MODELS.build(tiny_segmentor_cfg())
    feats = seg.backbone(clip_normalise(make_images(2)))
    a, b = trained(feats), plain(feats)
    assert torch.equal(a.dense, b.dense) and torch.equal(a.objectness, b.objectness)
    with pytest.raises(RuntimeError, match='needs teacher'):
        plain.loss(feats, clip_normalise(make_images(2)))


def test_loss_decreases_and_only_the_refiner_trains(teacher_files):
    model = MODELS.build(tiny_segmentor_cfg(teacher_files))
    model.train()
    optim = build_optim_wrapper(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2)))
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith('backbone.')}
    teacher_weight = model.refiner.teacher.vit.blocks[0].attn.qkv.weight.clone()
    from mmseg.structures import SegDataSample
    data = dict(inputs=list(make_images(4)), data_samples=[SegDataSample() for _ in range(4)])
    history = [model.train_step(data, optim) for _ in range(20)]
    for key in ('loss_corr', 'loss_bkg'):
        first, last = history[0][key].item(), np.mean([h[key].item() for h in history[-3:]])
        assert last < first, (key, first, last)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())
    assert torch.equal(model.refiner.teacher.vit.blocks[0].attn.qkv.weight, teacher_weight)


# ------------------------------------------------------------------------------------------ data
def write_images(root, names, size=(40, 56)):
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            path, format='JPEG' if path.suffix.lower() in ('.jpg', '.jpeg') else 'PNG')


def test_image_folder_dataset(tmp_path):
    names = ['n02/b.JPEG', 'n01/a.jpg', 'n01/c.png', 'flat.png', 'n03/deep/d.jpeg', '.hidden/e.png']
    write_images(tmp_path / 'train', names)
    (tmp_path / 'train' / 'notes.txt').write_text('not an image')
    found = [Path(p).relative_to(tmp_path / 'train').as_posix() for p in list_images(tmp_path / 'train')]
    assert found == ['flat.png', 'n01/a.jpg', 'n01/c.png', 'n02/b.JPEG', 'n03/deep/d.jpeg']
    ds = ImageFolderDataset(data_root=str(tmp_path), data_prefix=dict(img_path='train'), max_images=2)
    assert [Path(ds[i]['img_path']).name for i in range(len(ds))] == ['flat.png', 'a.jpg']
    picks = [ImageFolderDataset(data_root=str(tmp_path / 'train'), max_images=3, sample='random', seed=s)
             for s in (0, 0, 1)]
    assert len(picks[0]) == 3 and picks[0].get_data_info(0) == picks[1].get_data_info(0)
    with pytest.raises(FileNotFoundError, match='image folder not found.*missing'):
        ImageFolderDataset(data_root=str(tmp_path), data_prefix=dict(img_path='missing'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no image.*empty'):
        ImageFolderDataset(data_root=str(tmp_path / 'empty'))


def test_train_pipeline_of_the_recipe_config(tmp_path):
    write_images(tmp_path / 'train', ['n01/a.JPEG', 'n02/b.png'], size=(300, 500))
    cfg = Config.fromfile(str(REPO / 'configs/clip_dinoiser/clip_dinoiser_train_imagenet.py'))
    ds_cfg = cfg.train_dataloader.dataset
    with DefaultScope.overwrite_default_scope('mmseg'):  # the Runner sets it from the config
        ds = ImageFolderDataset(data_root=str(tmp_path), data_prefix=ds_cfg.data_prefix,
                                max_images=ds_cfg.max_images, sample=ds_cfg.sample, pipeline=ds_cfg.pipeline)
    for i in range(len(ds)):
        sample = ds[i]
        assert sample['inputs'].shape == (3, 448, 448) and sample['inputs'].dtype == torch.uint8
        assert 'gt_sem_seg' not in sample['data_samples']
    np.random.seed(0)
    img = np.full((4, 4, 3), 200, np.uint8)
    out = [BrightnessJitter(0.5)(dict(img=img.copy()))['img'][0, 0, 0] for _ in range(50)]
    assert min(out) >= 100 and max(out) == 255 and len(set(out)) > 10


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize('dataset', DATASETS)
def test_benchmark_configs(dataset):
    cfg = Config.fromfile(str(REPO / f'configs/clip_dinoiser/clip_dinoiser_vit-b16_{dataset}.py'))
    model = cfg.model
    assert model.vocabulary == f'clip_dinoiser/{dataset}' and model.backbone.pretrained == 'laion2b_s34b_b88k'
    assert model.refiner.gamma == 0.2 and model.refiner.token_layer == 'resblocks.-3.ln_2'
    assert (model.test_cfg.mode, model.test_cfg.crop_size, model.test_cfg.stride) == ('slide', 448, 224)
    assert 'teacher' not in model.refiner
    if dataset == 'pc60':
        assert model.background is None
    else:
        assert model.background == dict(thresh=0.99, objectness_thresh=0.5, optional=True)
    assert cfg.test_dataloader.dataset.pipeline[1].scale == (2048, 448)


def test_training_recipe_config(teacher_files):
    cfg = Config.fromfile(str(REPO / 'configs/clip_dinoiser/clip_dinoiser_train_imagenet.py'))
    assert cfg.train_dataloader.batch_size == 16 and cfg.train_dataloader.dataset.max_images == 1000
    assert cfg.train_cfg.max_iters == 6300 and cfg.param_scheduler[0].milestones == [5000]
    with pytest.raises(FileNotFoundError, match=r'model\.refiner\.teacher\.checkpoint = .*does not exist'):
        MODELS.build(cfg.model.refiner.teacher)
    model = MODELS.build(tiny_segmentor_cfg(teacher_files))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {id(p): g['lr'] for g in optim.optimizer.param_groups for p in g['params']}
    assert lrs[id(model.refiner.obj_proj.weight)] == pytest.approx(5e-5)
    assert lrs[id(model.refiner.bkg_decoder.weight)] == pytest.approx(1e-2)


# ------------------------------------------------------------------------------------------ tools


def write_seg_data(root):
    """Two labelled 64x64 images in a BaseSegDataset layout for tools/test.py."""
    write_images(root, ['img_dir/a.png', 'img_dir/b.png'], size=(64, 64))
    (root / 'ann_dir').mkdir()
    rng = np.random.default_rng(0)
    for name in ('a', 'b'):
        Image.fromarray(rng.integers(0, 3, (64, 64), dtype=np.uint8)).save(root / 'ann_dir' / f'{name}.png')


def write_tool_configs(tmp_path, files):
    runtime = str(REPO / 'configs/_base_/default_runtime.py')
    images = tmp_path / 'images'
    write_images(images, ['x/a.jpg', 'x/b.png', 'y/c.JPEG', 'd.png'], size=(72, 90))
    pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeShortestEdge', scale=64, max_size=640),
                dict(type='RandomCrop', crop_size=(64, 64)), dict(type='RandomFlip', prob=0.5),
                dict(type='BrightnessJitter', strength=0.5), dict(type='PackSegInputs')]
    train = dict(batch_size=2, num_workers=0, sampler=dict(type='InfiniteSampler', shuffle=True),
                 dataset=dict(type='ImageFolderDataset', data_root=str(images), pipeline=pipeline))
    optim = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3),
                 paramwise_cfg=dict(custom_keys={'refiner.bkg_decoder': dict(lr_mult=10.0)}))
    (tmp_path / 'train.py').write_text('\n'.join([
        f'_base_ = [{runtime!r}]',
        "custom_imports = dict(imports=['ovseg', 'ovseg.datasets.image_folder'], allow_failed_imports=False)",
        f'model = {tiny_segmentor_cfg(files)!r}', f'train_dataloader = {train!r}',
        f'optim_wrapper = {optim!r}',
        "param_scheduler = [dict(type='MultiStepLR', by_epoch=False, milestones=[3], gamma=0.1)]",
        "train_cfg = dict(type='IterBasedTrainLoop', max_iters=4)",
        'val_cfg = val_dataloader = val_evaluator = test_cfg = test_dataloader = test_evaluator = None',
        'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))',
        'randomness = dict(seed=0)']))
    write_seg_data(tmp_path / 'seg')
    test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
    test = dict(batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dict(type='BaseSegDataset', data_root=str(tmp_path / 'seg'), img_suffix='.png',
                             data_prefix=dict(img_path='img_dir', seg_map_path='ann_dir'),
                             metainfo=dict(classes=('cat', 'dog', 'grass')), pipeline=test_pipeline))
    (tmp_path / 'test.py').write_text('\n'.join([
        f'_base_ = [{runtime!r}]', f'model = {tiny_segmentor_cfg()!r}', f'test_dataloader = {test!r}',
        "test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])",
        'val_dataloader, val_evaluator = test_dataloader, test_evaluator']))
    return str(tmp_path / 'train.py'), str(tmp_path / 'test.py')


@pytest.mark.skipif(not (REPO / 'tools/train.py').exists(), reason='tools/train.py not written yet')
def test_train_tool_checkpoint_loads_in_test_tool(tmp_path, teacher_files):
    train_cfg, test_cfg = write_tool_configs(tmp_path, teacher_files)
    load_tool('train').main([train_cfg, '--work-dir', str(tmp_path / 'work')])
    ckpt = torch.load(tmp_path / 'work' / 'iter_4.pth', map_location='cpu', weights_only=True)
    refiner_keys = sorted(k for k in ckpt['state_dict'] if k.startswith('refiner.'))
    assert refiner_keys == ['refiner.bkg_decoder.bias', 'refiner.bkg_decoder.weight', 'refiner.obj_proj.bias',
                            'refiner.obj_proj.weight']  # no teacher weights in the checkpoint
    assert len(ckpt['message_hub']['log_scalars']['train/loss_corr']['log_history']) == 4
    metrics = load_tool('test').main([test_cfg, str(tmp_path / 'work' / 'iter_4.pth'),
                                      '--work-dir', str(tmp_path / 'test_work')])
    assert 0.0 <= metrics['mIoU'] <= 100.0
