"""Mask AP of instance predictions (pycocotools' COCOeval), ground truth from panoptic annotations or a
COCO instance JSON."""
import contextlib
import io
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from prettytable import PrettyTable
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ovseg.registry import METRICS

from .classes import gt_segments, thing_flags

# COCOeval.stats[0..5] under detectron2's names.
STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def encode_masks(masks: np.ndarray) -> List[dict]:
    """(N, H, W) binary masks -> N compressed RLEs (``counts`` bytes), as detectron2 encodes them."""
    if len(masks) == 0:
        return []
    return mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def _gt_instances(sample: dict, metric: str) -> List[dict]:
    """Thing segments of the ground truth: non-crowd ones as instances, crowd ones as iscrowd=1."""
    segments = [s for s in gt_segments(sample, metric) if s['isthing']]
    ids = sample['gt_panoptic_seg']['data'][0].cpu().numpy()
    masks = np.stack([ids == s['id'] for s in segments]) if segments else np.zeros((0, *ids.shape), bool)
    present = masks.reshape(len(segments), -1).any(axis=1)  # e.g. a segment cropped away
    rles = encode_masks(masks[present])
    kept = [s for s, p in zip(segments, present) if p]
    return [dict(segmentation=r, category_id=int(s['label']), iscrowd=int(s['iscrowd']))
            for r, s in zip(rles, kept)]


def _predictions(sample: dict) -> List[dict]:
    inst = sample['pred_instances']
    masks = inst['masks'].cpu().numpy().astype(bool)
    scores, labels = inst['scores'].cpu().numpy(), inst['labels'].cpu().numpy()
    return [dict(segmentation=r, category_id=int(c), score=float(s))
            for r, c, s in zip(encode_masks(masks), labels, scores)]


@METRICS.register_module()
class OVInstanceAPMetric(BaseMetric):
    """COCO mask AP (pycocotools ``COCOeval``, ``iouType='segm'``) of ``pred_instances``.

    Ground truth: a COCO instance JSON when one is given (``ann_file``, or the dataset's metainfo
    ``instance_ann_file``: FC-CLIP scores ADE20K against Mask2Former's ``ade20k_instance_val.json``),
    matched to the samples by image file name; otherwise the panoptic annotation, every thing segment an
    instance and crowd segments ``iscrowd=1`` (COCOeval's ignore regions). The two differ where the
    panoptic conversion resolved overlapping instances or dropped some; for COCO, detectron2 scores
    against ``instances_val2017.json`` (polygons), which differs slightly at mask borders.

    Predictions are RLE-encoded in ``process`` (only RLEs are kept and collected across processes)
    without a box, so COCOeval's area ranges use mask areas, as in detectron2's
    ``COCOEvaluator``. Categories are the thing classes (class indices as category ids); image
    ids are assigned after collection.

    Inputs per data sample: ``pred_instances`` with ``masks`` (N, H, W) bool, ``scores`` (N,),
    ``labels`` (N,); without a JSON also ``gt_panoptic_seg`` + ``segments_info`` (``id``, ``label``,
    ``iscrowd``, ``isthing``), with one ``img_path``. The JSON's category ids are class indices (as in
    ``ade20k_instance_val.json``: ADE-150 indices of the 100 things).

    Results in percent: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``; as in detectron2, NaN
    where COCOeval scores nothing (e.g. ``APl`` without large instances) and all NaN when there is no
    prediction at all. The per-class AP table is logged.

    Args:
        thing_classes (Sequence[int | str], optional): thing classes (indices or names); None takes
            ``dataset_meta['thing_classes']``. Default None.
        ann_file (str, optional): COCO instance JSON with the ground truth; None takes the dataset's
            ``instance_ann_file`` if it has one, else the panoptic segments. Default None.
        collect_device (str): 'cpu' or 'gpu', device used to gather results. Default 'cpu'.
        prefix (str, optional): metric name prefix. Default None.
    """

    def __init__(self, thing_classes: Optional[Sequence[Union[int, str]]] = None,
                 ann_file: Optional[str] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thing_classes = thing_classes
        if ann_file is not None and not osp.isfile(ann_file):
            raise FileNotFoundError(f'{type(self).__name__}: ann_file {ann_file} not found.')
        self.ann_file = ann_file

    @property
    def instance_json(self) -> Optional[str]:
        """The COCO instance JSON scored against (``ann_file`` or the dataset's), or None."""
        return self.ann_file or (self.dataset_meta or {}).get('instance_ann_file')

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Add one ``dict(height, width, gt, dt)`` of RLE annotations per image (``file_name`` instead
        of the ground truth when it comes from a JSON)."""
        for sample in data_samples:
            if self.instance_json is not None:
                self.results.append(dict(file_name=osp.basename(sample['img_path']), dt=_predictions(sample)))
                continue
            gt = _gt_instances(sample, type(self).__name__)
            height, width = sample['gt_panoptic_seg']['data'].shape[-2:]
            self.results.append(dict(height=int(height), width=int(width), gt=gt, dt=_predictions(sample)))

    def _json_gt(self, results: List[dict], category_ids: List[int]):
        """The instance JSON and the image id of every result (by file name)."""
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(self.instance_json)
        ids = {osp.basename(img['file_name']): img_id for img_id, img in coco.imgs.items()}
        missing = [r['file_name'] for r in results if r['file_name'] not in ids]
        if missing:
            raise KeyError(f'{type(self).__name__}: {len(missing)} images are not in {self.instance_json} '
                           f'(e.g. {missing[:3]})')
        outside = sorted(set(coco.getCatIds()) - set(category_ids))
        if outside:
            raise ValueError(f'{type(self).__name__}: categories {outside[:5]} of {self.instance_json} are '
                             'not thing classes of the dataset (category ids must be class indices)')
        return coco, [ids[r['file_name']] for r in results]

    def _coco_gt(self, results: List[dict], category_ids: List[int]) -> COCO:
        images, annotations = [], []
        for image_id, image in enumerate(results, start=1):
            images.append(dict(id=image_id, height=image['height'], width=image['width']))
            for ann in image['gt']:
                annotations.append(dict(ann, id=len(annotations) + 1, image_id=image_id,
                                        area=float(mask_util.area(ann['segmentation'])),
                                        bbox=mask_util.toBbox(ann['segmentation']).tolist()))
        classes = self.dataset_meta['classes']
        coco = COCO()
        coco.dataset = dict(images=images, annotations=annotations,
                            categories=[dict(id=c, name=classes[c]) for c in category_ids])
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Run COCOeval over all collected images."""
        classes = self.dataset_meta['classes']
        is_thing = thing_flags(classes, self.thing_classes, self.dataset_meta, type(self).__name__)
        category_ids = [int(k) for k in np.flatnonzero(is_thing)]
        if self.instance_json is not None:
            coco_gt, image_ids = self._json_gt(results, category_ids)
        else:
            coco_gt, image_ids = None, list(range(1, len(results) + 1))
        detections = [dict(d, image_id=i) for i, image in zip(image_ids, results) for d in image['dt']]
        logger = MMLogger.get_current_instance()
        if not detections:
            logger.warning(f'{type(self).__name__}: no instance predictions; AP is NaN.')
            return {name: float('nan') for name in STAT_NAMES}
        coco_gt = coco_gt or self._coco_gt(results, category_ids)
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_dt = coco_gt.loadRes(detections)
            coco_eval = COCOeval(coco_gt, coco_dt, iouType='segm')
            coco_eval.params.imgIds = sorted(image_ids)  # only the evaluated images, as detectron2
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        lines = [line for line in summary.getvalue().splitlines() if line.startswith(' Average')]
        logger.info('Mask AP (COCOeval, segm):\n' + '\n'.join(lines))
        logger.info('Per-class mask AP:\n' + self._class_table(coco_eval, classes))
        # COCOeval writes -1 where nothing is scored (e.g. no large instance); detectron2 reports NaN
        return {name: round(100 * float(v), 4) if v >= 0 else float('nan')
                for name, v in zip(STAT_NAMES, coco_eval.stats[:6])}

    @staticmethod
    def _class_table(coco_eval: COCOeval, classes: Sequence[str]) -> str:
        """AP per thing class (precision over IoUs, recalls, area 'all', max 100 detections)."""
        precision = coco_eval.eval['precision']  # (T, R, K, A, M)
        table = PrettyTable(['Class', 'AP'])
        for k, category_id in enumerate(coco_eval.params.catIds):
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            table.add_row([classes[category_id], f'{100 * values.mean():.2f}' if values.size else 'nan'])
        return table.get_string()
