"""MVTec AD / VisA layouts, anomaly masks and the per-category batch sampler on generated data."""
import csv
import os

import numpy as np
import pytest
from mmengine.dataset import DefaultSampler
from mmengine.registry import init_default_scope
from PIL import Image

from ovseg.datasets.anomaly import (CategoryBatchSampler, LoadAnomalyMask, MVTecADDataset, VisADataset,
                                    make_mvtec_like, make_visa_like)

CATEGORIES = ('brick', 'grass')


@pytest.fixture(scope='module', autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')  # pipelines name mmseg / ovseg transforms


@pytest.fixture(scope='module')
def mvtec_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('mvtec')
    masks = make_mvtec_like(str(root), CATEGORIES, num_good=2, num_defect=3, size=64)
    return root, masks


@pytest.fixture(scope='module')
def visa_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('visa')
    make_visa_like(str(root), CATEGORIES, num_good=2, num_defect=3, size=64)
    return root


PIPELINE = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32), keep_ratio=False),
            dict(type='LoadAnomalyMask'),
            dict(type='PackSegInputs',
                 meta_keys=('img_path', 'ori_shape', 'img_shape', 'category', 'anomaly_label'))]


def test_mvtec_lists_categories_labels_and_masks(mvtec_root):
    root, masks = mvtec_root
    dataset = MVTecADDataset(data_root=str(root), pipeline=PIPELINE)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert len(dataset) == 10
    assert [i['category'] for i in infos] == ['brick'] * 5 + ['grass'] * 5
    assert [i['anomaly_label'] for i in infos[:5]] == [0, 0, 1, 1, 1]
    sample = dataset[3]['data_samples']
    assert sample.metainfo['category'] == 'brick' and sample.metainfo['anomaly_label'] == 1
    assert sample.gt_sem_seg.data.shape == (1, 64, 64)  # original size; the image is resized to 32
    np.testing.assert_array_equal(sample.gt_sem_seg.data[0].numpy(), masks['brick'][3])
    assert dataset[0]['data_samples'].gt_sem_seg.data.sum() == 0
    assert len(MVTecADDataset(data_root=str(root), categories=['grass'], pipeline=[])) == 5


def test_mvtec_clear_errors(tmp_path, mvtec_root):
    root, _ = mvtec_root
    with pytest.raises(FileNotFoundError, match='data_root'):
        MVTecADDataset(data_root=str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='test folder of category'):
        MVTecADDataset(data_root=str(root), categories=['carpet'])
    broken = tmp_path / 'broken'
    make_mvtec_like(str(broken), ('brick',), num_good=1, num_defect=2, size=32)
    os.remove(broken / 'brick/ground_truth/pasted/001_mask.png')
    with pytest.raises(FileNotFoundError, match='001_mask.png'):
        MVTecADDataset(data_root=str(broken))


def test_visa_from_split_csv(visa_root):
    dataset = VisADataset(data_root=str(visa_root), pipeline=PIPELINE)
    assert len(dataset) == 10  # the train rows are left out
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert [i['anomaly_label'] for i in infos] == [0, 0, 1, 1, 1] * 2
    mask = dataset[4]['data_samples'].gt_sem_seg.data
    assert set(mask.unique().tolist()) == {0, 1}  # VisA-style 0/1 PNG
    assert len(VisADataset(data_root=str(visa_root), split='train', categories=['grass'])) == 1


def test_visa_clear_errors(tmp_path, visa_root):
    with pytest.raises(FileNotFoundError, match='split CSV'):
        VisADataset(data_root=str(tmp_path))
    bad = tmp_path / 'bad.csv'
    bad.write_text('object,split,image\nbrick,test,x.png\n')
    with pytest.raises(ValueError, match='lacks columns'):
        VisADataset(data_root=str(visa_root), split_csv=str(bad))
    with open(visa_root / 'split_csv/1cls.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    rows[-1]['mask'] = 'grass/Data/Masks/Anomaly/missing.png'
    missing = tmp_path / 'missing.csv'
    with open(missing, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(FileNotFoundError, match='missing.png'):
        VisADataset(data_root=str(visa_root), split_csv=str(missing))


def test_load_anomaly_mask_checks_size(tmp_path):
    path = tmp_path / 'm.png'
    Image.fromarray(np.array([[0, 255, 128]], dtype=np.uint8)).save(path)
    out = LoadAnomalyMask()(dict(seg_map_path=str(path), ori_shape=(1, 3)))
    np.testing.assert_array_equal(out['gt_seg_map'], [[0, 1, 1]])
    with pytest.raises(ValueError, match='1x3 but its image is 2x3'):
        LoadAnomalyMask()(dict(seg_map_path=str(path), ori_shape=(2, 3)))


def test_category_batch_sampler(mvtec_root):
    dataset = MVTecADDataset(data_root=str(mvtec_root[0]), pipeline=[])
    batches = list(CategoryBatchSampler(DefaultSampler(dataset, shuffle=False)))
    assert batches == [list(range(5)), list(range(5, 10))]
    assert len(CategoryBatchSampler(DefaultSampler(dataset, shuffle=False))) == 2
