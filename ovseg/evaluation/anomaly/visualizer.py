"""Heat-map overlays of anomaly maps for ``tools/test.py --show-dir``."""
import os.path as osp

import cv2
import mmcv
import numpy as np
from mmseg.visualization import SegLocalVisualizer

from ovseg.registry import VISUALIZERS


def anomaly_heatmap(image, amap, score_range=None, alpha=0.5):
    """Blend a JET heat map of ``amap`` over ``image``.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        amap (np.ndarray): (H, W) anomaly scores.
        score_range (tuple[float, float], optional): scores mapped to blue and red; None stretches each
            map from its minimum to its maximum. Default None.
        alpha (float): heat-map weight. Default 0.5.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    amap = np.asarray(amap, dtype=np.float64)
    low, high = score_range if score_range is not None else (amap.min(), amap.max())
    scaled = np.clip((amap - low) / (high - low), 0, 1) if high > low else np.zeros_like(amap)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (alpha * heat + (1 - alpha) * image).astype(np.uint8)


def mask_outline(image, mask, color=(255, 0, 0)):
    """``image`` (H, W, 3) RGB with the outline of the nonzero ``mask`` (H, W) drawn in ``color``."""
    contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(np.ascontiguousarray(image).copy(), contours, -1, color, 1)


@VISUALIZERS.register_module()
class AnomalyLocalVisualizer(SegLocalVisualizer):
    """Saves [image with the ground-truth outline | anomaly heat-map overlay] per test image.

    Images are named ``<category>_<defect>_<file>`` (MVTec reuses file names across defects) and the
    image score is written in the title bar of the overlay. Samples without ``anomaly_map`` are drawn
    as mmseg does.

    Args:
        name (str): instance name (mmengine's ManagerMixin). Default 'visualizer'.
        score_range (tuple[float, float], optional): fixed colour scale; None stretches each map.
        alpha (float): heat-map weight. Default 0.5.
        **kwargs: ``SegLocalVisualizer`` arguments (``vis_backends``, ``save_dir``, ...).
    """

    def __init__(self, name='visualizer', score_range=None, alpha=0.5, **kwargs):
        super().__init__(name=name, **kwargs)
        self.score_range = tuple(score_range) if score_range is not None else None
        self.alpha = float(alpha)

    @staticmethod
    def _unique_name(meta, name):
        if 'category' not in meta:
            return name
        stem = osp.splitext(osp.basename(meta.get('img_path', name)))[0]
        return '_'.join(str(meta[k]) for k in ('category', 'defect') if k in meta) + f'_{stem}'

    def add_datasample(self, name, image, data_sample=None, draw_gt=True, draw_pred=True, show=False,
                       wait_time=0, out_file=None, step=0, with_labels=True):
        """Draw and save one sample (see ``SegLocalVisualizer.add_datasample``)."""
        if data_sample is None or 'anomaly_map' not in data_sample:
            return super().add_datasample(name, image, data_sample, draw_gt, draw_pred, show, wait_time,
                                          out_file, step, with_labels)
        amap = data_sample.anomaly_map.data.squeeze(0).cpu().numpy()
        if amap.shape != image.shape[:2]:
            amap = mmcv.imresize(amap, (image.shape[1], image.shape[0]))
        panels = []
        if draw_gt and 'gt_sem_seg' in data_sample:
            panels.append(mask_outline(image, data_sample.gt_sem_seg.data.squeeze(0).cpu().numpy()))
        if draw_pred:
            heat = anomaly_heatmap(image, amap, self.score_range, self.alpha)
            if 'pred_score' in data_sample:
                score = float(data_sample.pred_score)
                cv2.putText(heat, f'{score:.3f}', (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
            panels.append(heat)
        drawn = np.concatenate(panels, axis=1) if panels else image
        name = self._unique_name(data_sample.metainfo, name)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(mmcv.rgb2bgr(drawn), out_file)
        else:
            self.add_image(name, drawn, step)
