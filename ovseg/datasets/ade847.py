"""ADE20K-Full (ADE-847): 847 classes of the full ADE20K release, 16-bit labels."""
from ovseg.registry import DATASETS
from ovseg.text import load_vocabulary

from .basesegdataset import Uint16SegDataset


@DATASETS.register_module()
class ADE20K847Dataset(Uint16SegDataset):
    """ADE-847: the 847 most frequent classes of ADE20K_2021_17_01 (Mask2Former / FC-CLIP order).

    Labels are 16-bit TIFFs (0..846, 65535 unlabeled) written by
    ``tools/dataset_converters/ade20k_847.py``; the layout is detectron2's, so data prepared for
    FC-CLIP or ODISE works as is. Expected layout under ``data_root`` (``ADE20K_2021_17_01``)::

        images_detectron2/{training,validation}/*.jpg
        annotations_detectron2/{training,validation}/*.tif

    Load with ``LoadUint16Annotations`` and evaluate with ``ignore_index=65535``.
    Class names are ``ovseg.text.load_vocabulary('ade847').names``.

    Args:
        img_suffix (str): Default '.jpg'.
        seg_map_suffix (str): Default '.tif'.
        **kwargs: passed to ``Uint16SegDataset``.
    """

    METAINFO = dict(classes=tuple(load_vocabulary('ade847').names))
    PREPARE_HINT = ('Download ADE20K_2021_17_01 (index_ade20k.pkl + images/) from '
                    'https://groups.csail.mit.edu/vision/datasets/ADE20K/ and run python '
                    'tools/dataset_converters/ade20k_847.py data/ADE20K_2021_17_01 '
                    '(docs/datasets.md#ade-847)')

    def __init__(self, img_suffix: str = '.jpg', seg_map_suffix: str = '.tif', **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
