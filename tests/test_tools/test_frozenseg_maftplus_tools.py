"""FrozenSeg and MAFT+ from their configs: the benchmark configs' protocol, the converters on files with the
original names and shapes of a reduced model (round trip, unknown and missing keys), ``tools/test.py`` on the
real COCO panoptic sample (``../shared/data/coco_panoptic_sample``) and the training recipes' tiny runs."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import ovseg.models  # noqa: F401  registers the models
from ovseg.registry import DATASETS, MODELS
from ovseg.testing import load_tool
from ovseg.testing.fcclip import tiny_frozenseg_cfg, tiny_maftplus_cfg
from ovseg.text import load_vocabulary
from test_fcclip_tools import to_original as fcclip_to_original

REPO = Path(__file__).resolve().parents[2]
SAMPLE = Path(os.environ.get('OVSEG_COCO_PANOPTIC_SAMPLE', REPO.parent / 'shared' / 'data' / 'coco_panoptic_sample'))
requires_sample = pytest.mark.skipif(not (SAMPLE / 'gt' / 'panoptic_examples.json').is_file(),
                                     reason=f'COCO panoptic sample not found at {SAMPLE}')
# config -> (vocabulary, training vocabulary, evaluators after OVIoUMetric); both originals evaluate with
# FC-CLIP's class lists (ovseg/text/vocabularies/fcclip/)
CONFIGS = {
    'configs/frozenseg/frozenseg_convnext-l_ade150.py': ('fcclip/ade150', 'coco_panoptic133', ['pan', 'ap']),
    'configs/frozenseg/frozenseg_convnext-l_ade847.py': ('fcclip/ade847', 'coco_panoptic133', []),
    'configs/frozenseg/frozenseg_convnext-l_pc59.py': ('fcclip/pc59', 'coco_panoptic133', []),
    'configs/frozenseg/frozenseg_convnext-l_pc459.py': ('fcclip/pc459', 'coco_panoptic133', []),
    'configs/frozenseg/frozenseg_convnext-l_voc20.py': ('fcclip/voc20', 'coco_panoptic133', []),
    'configs/frozenseg/frozenseg_convnext-l_voc21.py': ('fcclip/voc21', 'coco_panoptic133', []),
    'configs/frozenseg/frozenseg_convnext-l_cityscapes.py': ('fcclip/cityscapes19', 'coco_panoptic133', ['pan', 'ap']),
    'configs/frozenseg/frozenseg_convnext-l_coco-panoptic.py': ('coco_panoptic133', 'coco_panoptic133',
                                                                ['pan', 'ap']),
    'configs/maftplus/maftplus_convnext-l_ade150.py': ('fcclip/ade150', 'coco_stuff171', []),
    'configs/maftplus/maftplus_convnext-l_ade150-panoptic.py': ('fcclip/ade150', 'coco_panoptic133', ['pan']),
    'configs/maftplus/maftplus_convnext-l_ade847.py': ('fcclip/ade847', 'coco_stuff171', []),
    'configs/maftplus/maftplus_convnext-l_pc59.py': ('fcclip/pc59', 'coco_stuff171', []),
    'configs/maftplus/maftplus_convnext-l_pc459.py': ('fcclip/pc459', 'coco_stuff171', []),
    'configs/maftplus/maftplus_convnext-l_voc20.py': ('fcclip/voc20', 'coco_stuff171', []),
    'configs/maftplus/maftplus_convnext-l_coco-panoptic.py': ('coco_panoptic133', 'coco_panoptic133', ['pan']),
}


@pytest.mark.parametrize('path', sorted(CONFIGS))
def test_benchmark_configs(path):
    """Dataset classes = vocabulary in order, FC-CLIP's templates, the released test size and rules."""
    vocab, train_vocab, extra = CONFIGS[path]
    cfg = Config.fromfile(str(REPO / path))
    bases = re.search(r'_base_ = (\[.*?\])', (REPO / path).read_text(), re.S).group(1)
    assert all(b.startswith('../_base_/') for b in eval(bases))  # never on another leaf
    dataset = cfg.test_dataloader.dataset
    meta = DATASETS.get(dataset.type).METAINFO
    classes = tuple(c.strip() for c in dataset.get('metainfo', {}).get('classes', meta['classes']))
    names = tuple(load_vocabulary(vocab).names)
    if vocab == 'coco_panoptic133':
        assert len(classes) == 133 and names[:49] == classes[:49]
    else:  # FC-CLIP's lists (the originals' own files) follow the dataset's label order, with their own names
        assert len(classes) == len(names)
    assert cfg.model.vocabulary == vocab and cfg.model.train_vocabulary == train_vocab
    assert cfg.model.text_classifier.templates == 'vild14'
    resize = next(t for t in dataset.pipeline if t['type'] == 'Resize')
    assert resize['scale'] == ((2560, 1024) if 'cityscapes' in path else (1333, 800))
    assert (resize['backend'], resize['interpolation']) == ('pillow', 'bilinear')
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    assert evaluators[0]['type'] == 'OVIoUMetric' and evaluators[0]['convention'] == 'detectron2'
    types = {'pan': 'OVPanopticMetric', 'ap': 'OVInstanceAPMetric'}
    assert [e['type'] for e in evaluators[1:]] == [types[e] for e in extra]
    assert cfg.model.test_cfg.panoptic_on == ('pan' in extra)
    assert cfg.model.test_cfg.instance_on == ('ap' in extra)
    if extra:
        assert [classes[k] for k in cfg.model.thing_classes] == list(meta['thing_classes'])
    if 'frozenseg' in path:
        assert (cfg.model.behaviour, cfg.model.use_proposals) == ('released', False)
        assert cfg.model.sam.arch == 'vit_b' and cfg.model.transformer_decoder.num_queries == 250
        assert (cfg.model.ensemble.alpha, cfg.model.ensemble.beta) == (0.4, 0.8)
    else:
        assert cfg.model.dense_embedding == 'released' and cfg.model.transformer_decoder.num_queries == 100
        assert cfg.model.cdt.residual == ('panoptic' if 'panoptic' in path else 'semantic')
        assert (cfg.model.test_cfg.object_mask_threshold, cfg.model.test_cfg.overlap_threshold) == (0.2, 0.7)


# ovseg name -> original name for the FrozenSeg / MAFT+ parts, written independently of the converters
EXTRA_TO_ORIGINAL = (
    (r'sam\.model\.(.+)', r'sam.\1'),
    (r'sam_branch\.fpn\.(.+)', r'sem_seg_head.pixel_decoder.fpn3.\1'),
    (r'sam_branch\.level_embed', r'sem_seg_head.pixel_decoder.sam_transformer.level_embed'),
    (r'sam_branch\.encoder_layers\.(.+)', r'sem_seg_head.pixel_decoder.sam_transformer.encoder.layers.\1'),
    (r'injector\.feature_injectors\.(\d+)\.attn\.(.+)',
     r'sem_seg_head.predictor.transformer_cross_attention_layers_sam.\1.multihead_attn.\2'),
    (r'injector\.feature_injectors\.(\d+)\.norm\.(.+)',
     r'sem_seg_head.predictor.transformer_cross_attention_layers_sam.\1.norm.\2'),
    (r'cdt\.attn\.(.+)', r'cdt.cross_atten.multihead_attn.\1'),
    (r'cdt\.norm\.(.+)', r'cdt.cross_atten.norm.\1'),
    (r'cdt\.mlp\.(.+)', r'cdt.cross_atten.MLP.\1'),
    (r'teacher\.clip\.(.+)', r'backbone_t.clip_model.\1'),
)


def to_original(name):
    for pattern, repl in EXTRA_TO_ORIGINAL:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, repl, name)
    return fcclip_to_original(name)


METHODS = {
    'frozenseg': (tiny_frozenseg_cfg, 'model_converters/frozenseg_to_ovseg.py'),
    'maftplus': (tiny_maftplus_cfg, 'model_converters/maftplus_to_ovseg.py'),
}


def _tiny(method):
    torch.manual_seed(1)
    model = MODELS.build(METHODS[method][0](thing_classes=[0, 1]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights differ from a fresh build
    return model


def _original_checkpoint(model, path):
    """The model's weights under the original names (what the released file holds), with the constants."""
    state = {to_original(k): v.clone() for k, v in model.state_dict().items()}
    state['criterion.empty_weight'] = torch.ones(4)
    torch.save({'model': state, 'iteration': 1}, path)
    return state


@pytest.mark.parametrize('method', sorted(METHODS))
def test_converter_round_trip_and_errors(method, tmp_path):
    model = _tiny(method)
    conv = load_tool(METHODS[method][1])
    state = _original_checkpoint(model, tmp_path / 'orig.pth')
    assert any(k.startswith('sem_seg_head.predictor.') for k in state)
    args = ['--keep-teacher'] if method == 'maftplus' else []
    assert conv.main([str(tmp_path / 'orig.pth'), str(tmp_path / 'out.pth'), *args]) == 0
    ckpt = torch.load(tmp_path / 'out.pth', weights_only=True)
    fresh = MODELS.build(METHODS[method][0](thing_classes=[0, 1]))
    fresh.load_state_dict(ckpt['state_dict'], strict=True)
    loaded = fresh.state_dict()
    for key, value in model.state_dict().items():  # a bijection: every tensor back in its place
        assert torch.equal(loaded[key], value), key
    if method == 'maftplus':  # default: the training-only teacher is dropped
        assert conv.main([str(tmp_path / 'orig.pth'), str(tmp_path / 'eval.pth')]) == 0
        keys = torch.load(tmp_path / 'eval.pth', weights_only=True)['state_dict']
        assert not any(k.startswith('teacher.') for k in keys) and 'cdt.mlp.weight' in keys
    torch.save({'model': {**state, 'sem_seg_head.predictor.extra.weight': torch.zeros(1)}}, tmp_path / 'bad.pth')
    assert conv.main([str(tmp_path / 'bad.pth'), str(tmp_path / 'bad_out.pth')]) == 2
    layer = 'sem_seg_head.predictor.transformer_ffn_layers.1.linear2.bias'
    torch.save({'model': {k: v for k, v in state.items() if k != layer}}, tmp_path / 'short.pth')
    assert conv.main([str(tmp_path / 'short.pth'), str(tmp_path / 'short_out.pth')]) == 2


def _flatten(prefix, value):
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f'{prefix}.{k}', v)]
    if isinstance(value, (list, tuple)):
        return [f'{prefix}=[{",".join(str(v) for v in value)}]']
    return [f'{prefix}={value}']


def tiny_options(method):
    """--cfg-options turning a config's ConvNeXt-L model into the tiny random one."""
    tiny = METHODS[method][0]()
    keys = ['backbone', 'pixel_decoder', 'transformer_decoder', 'text_classifier', 'criterion', 'test_cfg']
    keys += ['sam'] if method == 'frozenseg' else ['cdt']
    options = ['model.backbone.pretrained=None']
    for key in keys:
        options += _flatten(f'model.{key}', tiny[key])
    return options + (['model.sam.checkpoint=None'] if method == 'frozenseg' else [])


def sample_options(loader, scale=(128, 96)):
    options = [f'{loader}.dataset.data_root={SAMPLE}', f'{loader}.dataset.ann_file=gt/panoptic_examples.json',
               f'{loader}.dataset.data_prefix.img_path=images',
               f'{loader}.dataset.data_prefix.seg_map_path=gt/panoptic_examples', f'{loader}.num_workers=0',
               f'{loader}.persistent_workers=False']
    return options + ([f'{loader}.dataset.pipeline.1.scale=({scale[0]},{scale[1]})'] if scale else [])


@requires_sample
@pytest.mark.parametrize('method', sorted(METHODS))
def test_tools_test_on_the_coco_panoptic_sample(method, tmp_path, capfd):
    """Converted original-named checkpoint -> tools/test.py with the COCO panoptic config on real images."""
    conv = load_tool(METHODS[method][1])
    _original_checkpoint(_tiny(method), tmp_path / 'orig.pth')
    assert conv.main([str(tmp_path / 'orig.pth'), str(tmp_path / 'ckpt.pth')]) == 0
    config = f'configs/{method}/{method}_convnext-l_coco-panoptic.py'
    options = tiny_options(method) + sample_options('test_dataloader') + ['default_hooks.logger.interval=1']
    metrics = load_tool('test.py').main([config, str(tmp_path / 'ckpt.pth'), '--work-dir', str(tmp_path / 'w'),
                                         '--cfg-options', *options])
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 0.0 <= metrics['PQ'] <= 100.0
    assert ('AP' in metrics) == (method == 'frozenseg')
    printed = capfd.readouterr()
    assert 'PQ_th' in (printed.out + printed.err)


def _losses(work, iters):
    ckpt = torch.load(work / f'iter_{iters}.pth', map_location='cpu', weights_only=True)
    return [float(v) for v in ckpt['message_hub']['log_scalars']['train/loss']['log_history']]


TRAIN = ['optim_wrapper.type=OptimWrapper', 'train_cfg.val_interval=1000', 'default_hooks.logger.interval=1']


@requires_sample
@pytest.mark.slow  # 1-2 min on 2 shared cores: 12 training iterations with SAM, then tools/test.py
def test_frozenseg_training_recipe_tiny_run(tmp_path):
    config = 'configs/frozenseg/frozenseg_convnext-l_coco-panoptic_train.py'
    iters, lsj = 12, 'train_dataloader.dataset.pipeline'
    options = tiny_options('frozenseg') + sample_options('train_dataloader', None) + TRAIN + sample_options(
        'val_dataloader') + [
        f'{lsj}.3.scale=(128,128)', f'{lsj}.4.crop_size=(128,128)', f'{lsj}.5.size=(128,128)',
        'train_dataloader.batch_size=2', 'optim_wrapper.optimizer.lr=0.003', f'train_cfg.max_iters={iters}',
        f'default_hooks.checkpoint.interval={iters}']
    work = tmp_path / 'work'
    load_tool('train.py').main([config, '--work-dir', str(work), '--cfg-options', *options])
    losses = _losses(work, iters)
    assert len(losses) == iters and np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
    test = tiny_options('frozenseg') + sample_options('test_dataloader')
    metrics = load_tool('test.py').main([config, str(work / f'iter_{iters}.pth'), '--work-dir',
                                         str(tmp_path / 'test'), '--cfg-options', *test])
    assert {'mIoU', 'PQ', 'AP'} <= set(metrics)


def _coco_stuff_from_sample(root):
    """The sample's two images as a COCO-Stuff layout: JPEGs and *_labelTrainIds.png semantic maps from the
    panoptic ground truth (COCO panoptic category order, all ids < 171; void 255)."""
    meta = json.loads((SAMPLE / 'gt' / 'panoptic_examples.json').read_text())
    order = {c['id']: k for k, c in enumerate(meta['categories'])}
    for split in ('train2017', 'val2017'):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for ann in meta['annotations']:
            stem = Path(ann['file_name']).stem
            rgb = np.asarray(Image.open(SAMPLE / 'gt' / 'panoptic_examples' / ann['file_name']), dtype=np.int64)
            ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
            label = np.full(ids.shape, 255, np.uint8)
            for seg in ann['segments_info']:
                label[ids == seg['id']] = order[seg['category_id']]
            size = (label.shape[1] // 4, label.shape[0] // 4)
            Image.fromarray(label).resize(size, Image.NEAREST).save(
                root / 'annotations' / split / f'{stem}_labelTrainIds.png')
            Image.open(SAMPLE / 'images' / f'{stem}.jpg').resize(size).save(root / 'images' / split / f'{stem}.jpg')
    return root


def _coco_stuff_loader(loader, root):
    return [f'{loader}.dataset.type=CheckedCOCOStuffDataset', f'{loader}.dataset.data_root={root}',
            f'{loader}.dataset.data_prefix.img_path=images/val2017',
            f'{loader}.dataset.data_prefix.seg_map_path=annotations/val2017', f'{loader}.num_workers=0',
            f'{loader}.persistent_workers=False', f'{loader}.dataset.pipeline.1.scale=(160,128)']


@requires_sample
@pytest.mark.slow  # 1-2 min on 2 shared cores: 12 training iterations with a teacher, then tools/test.py
def test_maftplus_training_recipe_tiny_run(tmp_path):
    root = _coco_stuff_from_sample(tmp_path / 'coco_stuff164k')
    config = 'configs/maftplus/maftplus_convnext-l_coco-stuff_train.py'
    iters = 12
    teacher = _flatten('model.teacher', tiny_maftplus_cfg()['teacher'])
    options = tiny_options('maftplus') + teacher + TRAIN + [
        'model.teacher.pretrained=None', f'train_dataloader.dataset.data_root={root}',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.2.scale=(160,128)', 'train_dataloader.batch_size=2',
        'optim_wrapper.optimizer.lr=0.003', f'train_cfg.max_iters={iters}',
        f'default_hooks.checkpoint.interval={iters}'] + _coco_stuff_loader('val_dataloader', root)
    work = tmp_path / 'work'
    load_tool('train.py').main([config, '--work-dir', str(work), '--cfg-options', *options])
    losses = _losses(work, iters)
    assert len(losses) == iters and np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
    ckpt = torch.load(work / f'iter_{iters}.pth', map_location='cpu', weights_only=True)['state_dict']
    assert {'cdt.mlp.weight', 'backbone.clip.visual.trunk.stem.0.weight'} <= set(ckpt)
    test = tiny_options('maftplus') + teacher + ['model.teacher.pretrained=None', 'model.vocabulary=coco_stuff171']
    test += _coco_stuff_loader('test_dataloader', root)
    metrics = load_tool('test.py').main([config, str(work / f'iter_{iters}.pth'), '--work-dir',
                                         str(tmp_path / 'test'), '--cfg-options', *test])
    assert 0.0 <= metrics['mIoU'] <= 100.0
