"""OVInstanceAPMetric against a COCO instance JSON (FC-CLIP's ADE20K mask AP reads Mask2Former's
ade20k_instance_val.json) versus the panoptic-derived instances, on generated data."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ovseg.datasets import ADE20KPanopticDataset
from ovseg.evaluation import OVInstanceAPMetric
from ovseg.evaluation.panoptic.instance_ap_metric import encode_masks
from ovseg.testing.panoptic_data import instance_annotations, make_ade_panoptic_layout

CLASSES = ('cat', 'person', 'grass')
META = dict(classes=CLASSES, thing_classes=('cat', 'person'))


def _scene():
    """10 x 20 panoptic ground truth: cat A (left) and cat B (right) in rows 0-3, grass below.

    The instance JSON of the same image also holds cat C (rows 5-7, columns 0-4), an instance the
    panoptic annotation does not have (its pixels are grass there), as when a panoptic conversion
    drops or merges an instance of the instance annotation.
    """
    ids = np.full((10, 20), 3, np.int64)
    ids[:4, :10], ids[:4, 10:] = 1, 2
    panoptic = [dict(id=1, label=0, iscrowd=0, isthing=True), dict(id=2, label=0, iscrowd=0, isthing=True),
                dict(id=3, label=2, iscrowd=0, isthing=False)]
    json_ids = ids.copy()
    json_ids[5:8, :5] = 4
    json_segments = [(1, 0, 0), (2, 0, 0), (4, 0, 0)]
    return ids, panoptic, json_ids, json_segments


def _sample(ids, segments, name):
    """Data sample whose predictions are exactly the panoptic cats (scores 0.9, 0.8)."""
    masks = np.stack([ids == 1, ids == 2])
    return dict(gt_panoptic_seg=dict(data=torch.as_tensor(ids)[None]), segments_info=segments,
                img_path=f'/data/images/{name}.jpg',
                pred_instances=dict(masks=torch.as_tensor(masks), scores=torch.tensor([0.9, 0.8]),
                                    labels=torch.tensor([0, 0])))


def _write_instance_json(path, json_ids, json_segments, name):
    anns = instance_annotations(json_ids, json_segments, image_id=7)
    path.write_text(json.dumps(dict(images=[dict(id=7, file_name=f'{name}.jpg', height=10, width=20)],
                                    annotations=anns, categories=[dict(id=0, name='cat'),
                                                                  dict(id=1, name='person')])))
    return str(path)


def _evaluate(metric, sample):
    metric.dataset_meta = META
    metric.process({}, [sample])
    return metric.evaluate(1)


def test_json_ground_truth_versus_panoptic_derived(tmp_path):
    """Predictions equal to the panoptic cats score AP 100 against the panoptic-derived instances, but
    against the JSON (one more cat) recall stops at 2/3: COCO's 101-point AP is 67 / 101 of the points
    at precision 1, i.e. 66.34, which pycocotools on the JSON file gives too."""
    ids, panoptic, json_ids, json_segments = _scene()
    ann_file = _write_instance_json(tmp_path / 'instances.json', json_ids, json_segments, 'ADE_val_1')
    from_panoptic = _evaluate(OVInstanceAPMetric(), _sample(ids, panoptic, 'ADE_val_1'))
    from_json = _evaluate(OVInstanceAPMetric(ann_file=ann_file), _sample(ids, panoptic, 'ADE_val_1'))
    assert from_panoptic['AP'] == pytest.approx(100.0)
    assert from_json['AP'] == pytest.approx(100 * 67 / 101, abs=1e-3)
    # the same JSON scored by pycocotools directly
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann_file)
        dets = [dict(image_id=7, category_id=0, segmentation=r, score=s)
                for r, s in zip(encode_masks(np.stack([ids == 1, ids == 2])), (0.9, 0.8))]
        evaluator = COCOeval(coco, coco.loadRes(dets), iouType='segm')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert from_json['AP'] == pytest.approx(100 * evaluator.stats[0], abs=1e-3)


def test_dataset_passes_its_instance_json_to_the_metric(tmp_path):
    """ADE20KPanopticDataset(instance_ann_file=...) puts the path into its metainfo; the metric scores
    against it without an ann_file of its own, matching images by file name."""
    root = make_ade_panoptic_layout(tmp_path / 'ADEChallengeData2016', num_images=2)
    dataset = ADE20KPanopticDataset(data_root=root, instance_ann_file='ade20k_instance_val.json',
                                    pipeline=[])
    assert dataset.metainfo['instance_ann_file'] == f'{root}/ade20k_instance_val.json'
    metric = OVInstanceAPMetric()
    metric.dataset_meta = dataset.metainfo
    assert metric.instance_json == dataset.metainfo['instance_ann_file']
    coco = COCO(metric.instance_json)
    for info in dataset:  # predictions = the JSON's own instances: AP 100
        image = next(i for i in coco.imgs.values() if info['img_path'].endswith(i['file_name']))
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image['id']))
        masks = np.stack([coco.annToMask(a) for a in anns]).astype(bool)
        metric.process({}, [dict(img_path=info['img_path'], pred_instances=dict(
            masks=torch.as_tensor(masks), scores=torch.ones(len(anns)),
            labels=torch.tensor([a['category_id'] for a in anns])))])
    assert metric.evaluate(2)['AP'] == pytest.approx(100.0)
    with pytest.raises(FileNotFoundError, match='prepare_ade20k_ins_seg'):
        ADE20KPanopticDataset(data_root=root, instance_ann_file='missing.json', pipeline=[])


def test_json_missing_image_or_foreign_category_is_named(tmp_path):
    ids, panoptic, json_ids, json_segments = _scene()
    ann_file = _write_instance_json(tmp_path / 'instances.json', json_ids, json_segments, 'ADE_val_1')
    with pytest.raises(KeyError, match='not in'):
        _evaluate(OVInstanceAPMetric(ann_file=ann_file), _sample(ids, panoptic, 'ADE_val_2'))
    data = json.loads(open(ann_file).read())
    data['categories'].append(dict(id=2, name='grass'))
    (tmp_path / 'bad.json').write_text(json.dumps(data))
    with pytest.raises(ValueError, match='not thing classes'):
        _evaluate(OVInstanceAPMetric(ann_file=str(tmp_path / 'bad.json')), _sample(ids, panoptic, 'ADE_val_1'))
    with pytest.raises(FileNotFoundError):
        OVInstanceAPMetric(ann_file=str(tmp_path / 'none.json'))
