"""COCO panoptic on the real sample (2 val2017 images, 50 segments, 3 crowd) from ../shared."""
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dataset_layouts import REPO, build_pipeline

from ovseg.datasets import COCOPanopticDataset
from ovseg.datasets.transforms import panoptic_to_instances, panoptic_to_semantic

SAMPLE = Path(os.environ.get('OVSEG_COCO_PANOPTIC_SAMPLE',
                             REPO.parent / 'shared' / 'data' / 'coco_panoptic_sample'))
pytestmark = pytest.mark.skipif(not (SAMPLE / 'gt' / 'panoptic_examples.json').is_file(),
                                reason=f'COCO panoptic sample not found at {SAMPLE}')
PIPELINE = (dict(type='LoadImageFromFile'), dict(type='LoadPanopticAnnotations'))


def _dataset(ann_file=None):
    prefix = dict(img_path=str(SAMPLE / 'images'),
                  seg_map_path=str(SAMPLE / 'gt' / 'panoptic_examples'))
    return COCOPanopticDataset(ann_file=str(ann_file or SAMPLE / 'gt' / 'panoptic_examples.json'),
                               data_prefix=prefix, pipeline=build_pipeline(*PIPELINE),
                               test_mode=True)


def test_sample_loads_with_all_segments():
    dataset = _dataset()
    assert len(dataset) == 2 and len(dataset.metainfo['classes']) == 133
    segments = [s for i in range(2) for s in dataset.get_data_info(i)['segments_info']]
    assert len(segments) == 50 and sum(s['iscrowd'] for s in segments) == 3
    assert all(0 <= s['label'] < 133 for s in segments)


@pytest.mark.parametrize('index', [0, 1])
def test_semantic_map_matches_the_json_areas(index):
    results = _dataset()[index]
    height, width = results['height'], results['width']
    semantic, panoptic = results['gt_seg_map'], results['gt_panoptic_seg']
    assert results['img'].shape[:2] == semantic.shape == panoptic.shape == (height, width)
    expected = Counter()
    for seg in results['segments_info']:
        expected[seg['label']] += seg['area']
        assert (panoptic == seg['id']).sum() == seg['area']
    labels, counts = np.unique(semantic, return_counts=True)
    found = dict(zip(labels.tolist(), counts.tolist()))
    assert found.pop(255, 0) == height * width - sum(expected.values())  # void
    assert found == dict(expected)


def test_instances_are_the_non_crowd_segments():
    results = _dataset()[0]
    segments = results['segments_info']
    instances = panoptic_to_instances(results['gt_panoptic_seg'], segments)
    kept = [s for s in segments if not s['iscrowd']]
    assert instances['masks'].shape == (len(kept), results['height'], results['width'])
    assert instances['labels'].tolist() == [s['label'] for s in kept]
    assert instances['masks'].sum(axis=(1, 2)).tolist() == [s['area'] for s in kept]
    with_crowd = panoptic_to_instances(results['gt_panoptic_seg'], segments, with_crowd=True)
    assert len(with_crowd['labels']) == len(segments) and with_crowd['iscrowd'].sum() == sum(
        s['iscrowd'] for s in segments)


def test_packs_the_semantic_map_for_mmseg_metrics():
    results = _dataset()[1]
    packed = build_pipeline(dict(type='PackSegInputs'))[0](results)
    gt = packed['data_samples'].gt_sem_seg.data
    assert gt.shape == (1, results['height'], results['width']) and int(gt.max()) == 255


def test_png_segment_missing_from_the_json_is_reported(tmp_path):
    coco = json.loads((SAMPLE / 'gt' / 'panoptic_examples.json').read_text())
    dropped = coco['annotations'][0]['segments_info'].pop()
    ann_file = tmp_path / 'panoptic.json'
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(ValueError,
                       match=rf'{coco["annotations"][0]["file_name"]}.*{dropped["id"]}'):
        _dataset(ann_file)[0]


def test_foreign_categories_are_rejected(tmp_path):
    coco = json.loads((SAMPLE / 'gt' / 'panoptic_examples.json').read_text())
    coco['categories'] = coco['categories'][:80]
    ann_file = tmp_path / 'panoptic.json'
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match='133 COCO panoptic categories'):
        _dataset(ann_file)


def test_mmseg_resize_keeps_both_maps_aligned():
    results = _dataset()[0]
    resize, flip = build_pipeline(dict(type='Resize', scale=(320, 200), keep_ratio=True),
                                  dict(type='RandomFlip', prob=1.0))
    results = flip(resize(results))
    panoptic, semantic = results['gt_panoptic_seg'], results['gt_seg_map']
    original = (results['height'], results['width'])
    assert panoptic.shape == semantic.shape == results['img'].shape[:2] != original
    rederived = panoptic_to_semantic(panoptic, results['segments_info'], 'resized')
    assert np.array_equal(rederived, semantic)
