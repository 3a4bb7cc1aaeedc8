"""COCO-format panoptic annotations whose semantic ground truth is a separate label map."""
import os.path as osp
from typing import List

from .coco_panoptic import COCOPanopticDataset


class PanopticSemanticDataset(COCOPanopticDataset):
    """Panoptic JSON + PNGs (``data_prefix.pan_map_path``) plus semantic label maps
    (``data_prefix.seg_map_path``), as detectron2 registers ADE20K and Cityscapes panoptic: the
    semantic metric reads the benchmark's own label maps, the panoptic and instance metrics the
    panoptic PNGs.

    Each data info has ``seg_map_path`` = the semantic map (mmseg's ``LoadAnnotations`` reads it),
    ``pan_map_path`` = the panoptic PNG (``LoadPanopticSegIds`` reads it) and ``segments_info``.
    Subclasses set the category check (``_category_labels``) and where an image and its semantic
    map are (``_image_path``, ``_semantic_path``).
    """

    def _semantic_path(self, info: dict, semantic_dir: str) -> str:
        """Semantic map of a sample: the panoptic PNG's file name in ``semantic_dir``."""
        return osp.join(semantic_dir, osp.basename(info['pan_map_path']))

    def _image_path(self, info: dict) -> str:
        """Image of a sample: ``images[].file_name`` in ``data_prefix.img_path``."""
        return info['img_path']

    def _check_layout(self) -> None:
        super()._check_layout()
        pan_dir = self.data_prefix.get('pan_map_path')
        if not pan_dir or not osp.isdir(pan_dir):
            raise self._missing('panoptic PNG folder (data_prefix.pan_map_path)', pan_dir)

    def _list_samples(self) -> List[dict]:
        """The COCO panoptic listing with the panoptic PNG moved to ``pan_map_path``."""
        pan_dir, sem_dir = self.data_prefix['pan_map_path'], self.data_prefix['seg_map_path']
        self.data_prefix['seg_map_path'] = pan_dir
        try:
            data_list = super()._list_samples()
        finally:
            self.data_prefix['seg_map_path'] = sem_dir
        for info in data_list:
            info['pan_map_path'] = info['seg_map_path']
            info.update(img_path=self._image_path(info), seg_map_path=self._semantic_path(info, sem_dir))
        return data_list

    def _check_files(self, data_list: List[dict]) -> None:
        super()._check_files(data_list)
        missing = [d['pan_map_path'] for d in data_list if not osp.isfile(d['pan_map_path'])]
        if missing and not self.backend_args:
            raise FileNotFoundError(f'{type(self).__name__}: {len(missing)} of {len(data_list)} panoptic '
                                    f'PNGs are missing ({", ".join(missing[:3])}). {self.PREPARE_HINT}')
