"""ADE20K and Cityscapes panoptic datasets on generated layouts, and the LSJ training pipeline of the
FC-CLIP COCO config keeping the panoptic map aligned with the image and the semantic map."""
import json
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ovseg.datasets import ADE20KPanopticDataset, CityscapesPanopticDataset, COCOPanopticDataset
from ovseg.datasets.transforms import panoptic_to_semantic
from ovseg.registry import TRANSFORMS
from ovseg.testing.panoptic_data import (make_ade_panoptic_layout, make_cityscapes_panoptic_layout,
                                         make_coco_panoptic_layout)

REPO = Path(__file__).resolve().parents[2]
EVAL_PIPELINE = (dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                 dict(type='LoadPanopticSegIds'), dict(type='PackPanopticInputs'))


def _pipeline(*cfgs):
    return [TRANSFORMS.build(cfg) for cfg in cfgs]


def _check_sample(packed):
    """Semantic map and panoptic segments agree; segments_info travels in the metainfo."""
    sample = packed['data_samples']
    ids = sample.gt_panoptic_seg.data[0].numpy()
    semantic = sample.gt_sem_seg.data[0].numpy()
    assert ids.dtype == np.int32 and ids.shape == semantic.shape == packed['inputs'].shape[-2:]
    segments = sample.metainfo['segments_info']
    for seg in segments:
        assert (semantic[ids == seg['id']] == seg['label']).all()
    assert (semantic[ids == 0] == 255).all()
    return sample, segments


def test_ade_panoptic_layout(tmp_path):
    root = make_ade_panoptic_layout(tmp_path / 'ADEChallengeData2016', num_images=2)
    dataset = ADE20KPanopticDataset(data_root=root, pipeline=_pipeline(*EVAL_PIPELINE), test_mode=True)
    assert len(dataset) == 2 and len(dataset.metainfo['thing_classes']) == 100
    info = dataset.get_data_info(0)
    assert info['seg_map_path'].endswith('annotations/validation/ADE_val_00000001.png')
    assert info['pan_map_path'].endswith('ade20k_panoptic_val/ADE_val_00000001.png')
    assert info['img_path'].endswith('images/validation/ADE_val_00000001.jpg')
    sample, segments = _check_sample(dataset[0])
    labels = {s['label']: s['isthing'] for s in segments}
    assert labels == {0: False, 3: False, 7: True, 12: True}  # wall, floor, bed, person
    assert sample.metainfo['pan_map_path'] == info['pan_map_path']


def test_ade_panoptic_checks_categories_and_layout(tmp_path):
    root = Path(make_ade_panoptic_layout(tmp_path / 'ADEChallengeData2016', num_images=1))
    coco = json.loads((root / 'ade20k_panoptic_val.json').read_text())
    coco['categories'][0]['isthing'] = 1  # 'wall' as a thing
    (root / 'bad.json').write_text(json.dumps(coco))
    with pytest.raises(ValueError, match='not the 100 ADE20K-150 thing classes'):
        ADE20KPanopticDataset(data_root=str(root), ann_file='bad.json')
    with pytest.raises(FileNotFoundError, match=r'pan_map_path.*missing_dir.*prepare_ade20k_pan_seg'):
        ADE20KPanopticDataset(data_root=str(root), data_prefix=dict(
            img_path='images/validation', seg_map_path='annotations/validation', pan_map_path='missing_dir'))


def test_cityscapes_panoptic_layout(tmp_path):
    root = make_cityscapes_panoptic_layout(tmp_path / 'cityscapes', num_images=2)
    dataset = CityscapesPanopticDataset(data_root=root, pipeline=_pipeline(*EVAL_PIPELINE), test_mode=True)
    info = dataset.get_data_info(1)
    assert info['img_path'].endswith('leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png')
    assert info['seg_map_path'].endswith('gtFine/val/lindau/lindau_000001_000019_gtFine_labelTrainIds.png')
    _, segments = _check_sample(dataset[1])
    car = [s for s in segments if s['label'] == 13]  # label id 26 -> train id 13
    assert car and all(s['isthing'] for s in car) and any(s['iscrowd'] for s in car)


def test_lsj_training_pipeline_keeps_the_panoptic_map_aligned(tmp_path):
    init_default_scope('mmseg')
    root = make_coco_panoptic_layout(tmp_path / 'coco', split='train2017', num_images=2, size=(48, 64))
    cfg = Config.fromfile(str(REPO / 'configs/fcclip/fcclip_convnext-l_coco-panoptic_train.py'))
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'LoadPanopticAnnotations', 'RandomFlip',
                                            'RandomResize', 'RandomCrop', 'Pad', 'PackPanopticInputs']
    assert pipeline[3]['ratio_range'] == (0.1, 2.0) and pipeline[4]['crop_size'] == (1024, 1024)
    pipeline[3]['scale'], pipeline[4]['crop_size'], pipeline[5]['size'] = (64, 64), (64, 64), (64, 64)
    prefix = dict(img_path='train2017', seg_map_path='annotations/panoptic_train2017')
    dataset = COCOPanopticDataset(data_root=root, ann_file='annotations/panoptic_train2017.json',
                                  data_prefix=prefix, pipeline=pipeline)
    for index in range(2):
        for _ in range(4):  # random scale, crop and flip: always aligned
            packed = dataset[index]
            sample = packed['data_samples']
            ids = sample.gt_panoptic_seg.data[0].numpy()
            semantic = sample.gt_sem_seg.data[0].numpy()
            assert packed['inputs'].shape[-2:] == semantic.shape == (64, 64)  # padded to the crop size
            h, w = ids.shape  # the panoptic map is not padded
            assert h <= 64 and w <= 64 and (semantic[h:] == 255).all() and (semantic[:, w:] == 255).all()
            segments = sample.metainfo['segments_info']
            expected = panoptic_to_semantic(ids, segments, 'x')
            assert (semantic[:h, :w] == expected).all()
