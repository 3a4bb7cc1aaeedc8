"""tools/analysis/benchmark.py on every model type (tiny random models) and the suite runner.

The shipped configs are switched to tiny models with --cfg-options (their pretrained tags and checkpoint
paths stay, so --random-weights must strip them); the suite runs tiny leaf configs over shipped ones.
"""
import json
from pathlib import Path

import pytest

from ovseg.testing import load_tool, tiny_clip_arch
from ovseg.testing.fcclip import tiny_fcclip_cfg

REPO = Path(__file__).resolve().parents[2]


def _load(name):
    return load_tool(f'analysis/{name}')


@pytest.fixture(scope='module')
def bench():
    return _load('benchmark')


@pytest.fixture(scope='module')
def suite():
    return _load('benchmark_suite')


def _flatten(prefix, value):
    """Nested dict -> ['a.b=value', ...] for --cfg-options."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f'{prefix}.{k}', v)]
    if isinstance(value, (list, tuple)):
        return [f'{prefix}=[{",".join(str(v) for v in value)}]']
    return [f'{prefix}={value}']


CLIP = _flatten('model.backbone.arch', tiny_clip_arch('vit'))
SLIDE = ['model.test_cfg.crop_size=64', 'model.test_cfg.stride=32']
DINO = ['model.refiner.in_channels=32', 'model.refiner.token_layer=resblocks.-1.ln_2']
SAM = ['arch=tiny', 'image_size=256']  # the SAM checkpoint path stays: --random-weights removes it
FCCLIP = [o for key in ('backbone', 'pixel_decoder', 'transformer_decoder', 'test_cfg')
          for o in _flatten(f'model.{key}', tiny_fcclip_cfg()[key])]
ANOMALYCLIP = ['model.head.n_ctx=4', 'model.head.text_depth=1', 'model.head.text_n_ctx=2',
               'model.head.features=[1,2]', 'model.head.vv_blocks=1']
ADAPTCLIP = ['model.head.n_ctx=4', 'model.head.features=[1,2]', 'model.head.vv_blocks=1',
             'model.head.pq_mid_dim=8']
# config -> (tiny --cfg-options, stages that must show up)
CASES = {
    'maskclip/maskclip_vit-b16_voc21.py': (CLIP + SLIDE, {'backbone', 'head_rules', 'upsample'}),
    'clip_dinoiser/clip_dinoiser_vit-b16_voc21.py': (
        CLIP + SLIDE + DINO, {'backbone', 'refiner', 'head_rules'}),
    'sam_clip/maskclip_vit-b16_samrefine-vit-b_voc21.py': (
        CLIP + SLIDE + [f'model.sam_refiner.sam.{s}' for s in SAM], {'backbone', 'sam_refiner'}),
    'sam_clip/samproposals-vit-b_clip-dinoiser_vit-b16_voc21.py': (
        CLIP + SLIDE + DINO + [f'model.proposals.sam.{s}' for s in SAM]
        + ['model.proposals.points_per_side=4'],
        {'backbone', 'refiner', 'proposals', 'proposals.sam.model.image_encoder', 'mask_classify'}),
    'fcclip_ade.py': (FCCLIP, {'backbone', 'pixel_decoder', 'transformer_decoder',
                               'transformer_decoder.class_head', 'out_vocab_classifier', 'postprocess'}),
    'anomaly/winclip_vit-b16-plus-240_mvtec.py': (CLIP, {'head.encode_images', 'head.score'}),
    'anomaly/anovl_vit-b16-plus-240_tta_mvtec.py': (
        CLIP + ['model.head.view_batch=8'], {'head.encode_tokens', 'head.adapt', 'head.image_scores'}),
    'anomaly/musc_vit-l14-336_visa.py': (CLIP + ['model.head.layers=[0,1]'], {'head.extract', 'head'}),
    'anomaly/anomalyclip_vit-l14-336_mvtec.py': (
        CLIP + ANOMALYCLIP, {'head.encode_images', 'head.text_features', 'head.score'}),
    'anomaly/winclip_vit-b16-plus-240_2shot_mvtec.py': (CLIP, {'head.encode_images', 'head.score'}),
    'anomaly/adaptclip_vit-l14-336_1shot_mvtec.py': (CLIP + ADAPTCLIP, {'head.encode_images', 'head.score'}),
}


def _check_figures(result):
    assert result['images_per_s'] > 0 and result['peak_memory_mib'] > 0
    assert result['latency_ms_min'] <= result['latency_ms_p50'] <= result['latency_ms_p90']
    stages, total = result['stages_ms'], result['latency_ms_mean']
    assert all(v >= 0 for k, v in stages.items() if k != 'other'), stages
    assert stages['other'] >= -1e-6 * total  # the stages sum to at most the total (rounding aside)
    assert sum(stages.values()) == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize('config', sorted(CASES), ids=lambda c: Path(c).stem)
def test_every_model_type(bench, config, tmp_path):
    options, expected = CASES[config]
    out = tmp_path / 'bench.json'
    result = bench.main([str(REPO / 'configs' / config), '--random-weights', '--templates', 'single',
                         '--size', 'small', '--small-side', '64', '--repeats', '2', '--warmup', '1',
                         '--json', str(out), '--cfg-options', *options])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    _check_figures(result)
    assert expected <= set(result['stages_ms']), result['stages_ms']
    assert result['size'] == 'small' and min(result['shape']) == 64
    if 'musc' in config:  # one VisA category batch: max(8, RsCIN's k = 9) images, per-image figures
        assert result['batch'] == 9 and result['text_encoding_s'] is None
        assert result['batch_latency_ms_mean'] == pytest.approx(9 * result['latency_ms_mean'])
    else:
        assert result['batch'] == 1 and result['text_encoding_s'] > 0
    if 'shot' in config:  # few-shot: the config's k references, encoded once before the timed images
        assert result['shots'] == int(config.split('shot')[0][-1]) and result['memory_build_s'] > 0
    if 'samproposals' in config:
        assert result['counts_per_image']['sam_proposals'] >= 0
    if 'samrefine' in config:
        assert result['counts_per_image']['sam_refine_regions'] >= 0


def test_published_and_small_sizes(bench):
    def shape(config):
        return bench.published_shape(bench.load_config(str(REPO / 'configs' / config)))

    assert shape('maskclip/maskclip_vit-b16_ade150.py') == (448, 597)  # short side 448 of a 4:3 image
    assert shape('clip_dinoiser/clip_dinoiser_vit-b16_cityscapes19.py') == (448, 896)  # 2:1
    assert shape('fcclip_ade.py') == (800, 1067)
    assert shape('fcclip/fcclip_convnext-l_cityscapes.py') == (1024, 2048)
    assert shape('anomaly/musc_vit-l14-336_mvtec.py') == (518, 518)
    assert shape('anomaly/winclip_vit-b16-plus-240_visa.py') == (240, 240)
    assert bench.small_shape((448, 597)) == (224, 299) and bench.small_shape((518, 518)) == (224, 224)
    from mmengine.config import Config
    with pytest.raises(ValueError, match='--shape'):
        bench.published_shape(Config(dict(model=dict(type='OVSegmentor'))))  # no test pipeline


def test_random_weights_strip_every_source(bench):
    cfg = bench.load_config(str(REPO / 'configs/sam_clip/samproposals-vit-b_clip-dinoiser_vit-b16_ade150.py'),
                            random_weights=True, templates='single')
    text = json.dumps(cfg.model.to_dict())
    assert 'pretrained' not in text and 'checkpoint' not in text
    assert cfg.model.text_classifier.templates == 'single' and cfg.model.text_classifier.cache_dir is None
    fcclip = bench.load_config(str(REPO / 'configs/fcclip_ade.py'), random_weights=True)
    assert 'pretrained' not in fcclip.model.backbone


def test_precision_support(bench):
    import torch

    import ovseg.models.anomaly.anomalyclip  # noqa: F401  registers AnomalyCLIPSegmentor
    for name in ('OVSegmentor', 'SAMProposalSegmentor', 'FCCLIPSegmentor', 'ZeroShotAnomalySegmentor',
                 'AnomalyCLIPSegmentor'):
        assert bench.supports_precision(name), name
    assert not bench.supports_precision(torch.nn.Module)


@pytest.mark.parametrize('config', ['fcclip_ade.py', 'anomaly/anomalyclip_vit-l14-336_mvtec.py',
                                    'anomaly/musc_vit-l14-336_visa.py'], ids=lambda c: Path(c).stem)
def test_bf16_fcclip_and_anomaly(bench, config):
    options, expected = CASES[config]
    result = bench.main([str(REPO / 'configs' / config), '--random-weights', '--templates', 'single',
                         '--size', 'small', '--small-side', '64', '--repeats', '1', '--warmup', '1',
                         '--precision', 'bf16', '--cfg-options', *options])
    assert result['precision'] == 'bf16'
    _check_figures(result)
    assert expected <= set(result['stages_ms']), result['stages_ms']


def test_suite_small_side_is_the_benchmarks(suite, bench):
    assert suite.SMALL_SIDE == bench.SMALL_SIDE  # the suite's --help must not import the benchmark


def test_plan_lists_everything_and_dedupes(suite):
    args = suite.parse_args(['--configs', 'configs/maskclip/*.py', 'configs/clip_dinoiser/*.py',
                             '--sizes', 'published', '--dedupe'])
    entries = suite.plan_runs(args)
    names = [e['name'] for e in entries]
    assert len(names) == 21 and len(set(names)) == 21  # 10 + 10 test configs and 1 training config
    train = next(e for e in entries if e['name'] == 'clip_dinoiser_train_imagenet')
    assert train['status'] == 'skipped' and 'training' in train['note']
    by_name = {e['name']: e for e in entries}
    pc59 = by_name['maskclip_vit-b16_pc59']  # ADE-150's model at the same size, 59 classes
    assert pc59['status'] == 'deduplicated' and pc59['represented_by'] == 'maskclip_vit-b16_coco_stuff171'
    assert 'maskclip_vit-b16_pc59' in by_name['maskclip_vit-b16_coco_stuff171']['same_as_this']
    assert by_name['maskclip_vit-b16_cityscapes19']['status'] == 'run'  # 2:1 images: another size
    assert by_name['maskclip_vit-b16_cityscapes19']['shape'] == [448, 896]


def _tiny_leaf(path, base, extra=''):
    arch = tiny_clip_arch('vit')
    path.write_text(f"_base_ = [{str(REPO / 'configs' / base)!r}]\n"
                    f'model = dict(backbone=dict(arch={arch!r}){extra})\n'
                    "test_pipeline = [dict(type='LoadImageFromFile'),\n"
                    "                 dict(type='Resize', scale=(512, 96), keep_ratio=True),\n"
                    "                 dict(type='PackSegInputs')]\n"
                    'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n')
    return path


def _check_report(out_dir, records):
    report = json.loads((out_dir / 'benchmark_suite.json').read_text())
    assert {'cpu', 'cpu_count', 'torch', 'threads'} <= set(report['machine'])
    assert len(report['records']) == len(records)
    table = (out_dir / 'benchmark_suite.md').read_text()
    assert ('| config | size | precision | status | images/s | latency p50 / p90 (ms) | CPU ms | peak MiB |'
            in table)
    assert table.count('\n| tiny_') + table.count('\n| clip_dinoiser_train') == len(records)
    for record in report['records']:
        if record['status'] == 'ok':
            _check_figures(record['result'])
            assert record['result']['templates'] == 'single'
    return report, table


def test_suite_on_two_tiny_configs(suite, tmp_path):
    _tiny_leaf(tmp_path / 'tiny_maskclip.py', 'maskclip/maskclip_vit-b16_voc21.py',
               ', test_cfg=dict(crop_size=64, stride=32)')
    _tiny_leaf(tmp_path / 'tiny_winclip.py', 'anomaly/winclip_vit-b16-plus-240_mvtec.py')
    out = tmp_path / 'out'
    report = suite.main(['--configs', str(tmp_path / 'tiny_*.py'),
                         str(REPO / 'configs/clip_dinoiser/clip_dinoiser_train_imagenet.py'),
                         '--sizes', 'small', '--small-side', '64', '--repeats', '2', '--out-dir', str(out)])
    report, table = _check_report(out, report['records'])
    status = {r['name']: r['status'] for r in report['records']}
    assert status == {'tiny_maskclip': 'ok', 'tiny_winclip': 'ok', 'clip_dinoiser_train_imagenet': 'skipped'}
    rows = {r['name']: r for r in report['records']}
    assert rows['tiny_maskclip']['result']['shape'] == [64, 85]
    assert 'small 64x85 slide 64/32' in table and 'training-only config' in table


@pytest.mark.slow
def test_suite_sizes_precisions_and_dedupe(suite, tmp_path):
    slide = ', test_cfg=dict(crop_size=64, stride=32)'
    _tiny_leaf(tmp_path / 'tiny_voc20.py', 'maskclip/maskclip_vit-b16_voc20.py', slide)
    _tiny_leaf(tmp_path / 'tiny_pc59.py', 'maskclip/maskclip_vit-b16_pc59.py', slide)
    _tiny_leaf(tmp_path / 'tiny_musc.py', 'anomaly/musc_vit-l14-336_mvtec.py', ', head=dict(layers=(0, 1))')
    out = tmp_path / 'out'
    report = suite.main(['--configs', str(tmp_path / 'tiny_*.py'), '--sizes', 'small', 'published',
                         '--small-side', '64', '--precision', 'fp32', 'bf16', '--repeats', '2', '--dedupe',
                         '--out-dir', str(out)])
    report, table = _check_report(out, report['records'])
    assert len(report['records']) == 3 * 2 * 2
    status = {(r['name'], r['size'], r['precision']): r['status'] for r in report['records']}
    assert status[('tiny_voc20', 'published', 'fp32')] == 'deduplicated'
    assert status[('tiny_pc59', 'published', 'bf16')] == 'ok'
    assert status[('tiny_musc', 'small', 'fp32')] == 'ok'
    assert 'also stands for tiny_voc20' in table and 'batch 8' in table
