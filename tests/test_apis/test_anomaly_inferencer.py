"""AnomalyInferencer on tiny random-weight models and MVTec-layout data generated here."""
import numpy as np
import pytest
import torch
from mmseg.structures import SegDataSample
from PIL import Image

from ovseg.apis import AnomalyInferencer, OVSegInferencer
from ovseg.datasets.anomaly import MVTecADDataset, make_mvtec_like
from ovseg.testing import tiny_anomaly_cfg, tiny_maskclip_cfg
from ovseg.utils.image_io import ImageLoadError


@pytest.fixture(scope='module')
def mvtec(tmp_path_factory):
    """A generated MVTec-layout dataset (64 px: network size = original size) with normal training images."""
    root = tmp_path_factory.mktemp('mvtec_api')
    make_mvtec_like(str(root), ('brick',), num_good=2, num_defect=2, size=64, seed=3, num_train=3)
    return root


@pytest.fixture(scope='module')
def fewshot():
    torch.manual_seed(0)
    return AnomalyInferencer(tiny_anomaly_cfg())


def test_paths_arrays_and_original_size(fewshot, mvtec):
    path = mvtec / 'brick' / 'test' / 'pasted' / '000.png'
    rgb = np.asarray(Image.open(path).convert('RGB'))
    wide = np.ascontiguousarray(np.concatenate([rgb, rgb[:, :32]], axis=1))  # 64 x 96: resized back
    results = [fewshot(source, 'brick') for source in (path, str(path), rgb)]
    for result in results:
        assert result['anomaly_map'].shape == (64, 64) and result['anomaly_map'].dtype == np.float32
        assert 0.0 <= result['score'] <= 1.0 and result['overlay'] is None and result['class_name'] == 'brick'
        np.testing.assert_allclose(result['anomaly_map'], results[0]['anomaly_map'], atol=1e-6)
    batch = fewshot([path, wide], 'brick', return_overlay=True, batch_size=2)
    assert [r['anomaly_map'].shape for r in batch] == [(64, 64), (64, 96)]
    assert batch[1]['overlay'].shape[:2] == (64, 96 + 4 + 12) and batch[1]['overlay'].dtype == np.uint8
    np.testing.assert_allclose(batch[0]['anomaly_map'], results[0]['anomaly_map'], atol=1e-6)


def test_references_equal_the_dataset_protocol(fewshot, mvtec):
    """Few-shot through the API (uploaded references) = the k-shot test protocol (references from the
    dataset's metainfo), on the same image and the same drawn references."""
    dataset = MVTecADDataset(str(mvtec), references=dict(k_shot=2, seed=0), pipeline=[])
    info = next(i for i in map(dataset.get_data_info, range(len(dataset))) if i['anomaly_label'])
    api = fewshot(info['img_path'], 'brick', references=list(info['reference_paths']))
    model = fewshot.model
    item = fewshot.inputs.prepare(fewshot.inputs.load(info['img_path']))
    inputs, samples = fewshot.inputs.collate(model, [item])
    samples[0].set_metainfo(dict(category='brick', reference_paths=info['reference_paths']))
    protocol = model.predict(inputs, samples)[0]
    np.testing.assert_allclose(api['anomaly_map'], protocol.anomaly_map.data[0].numpy(), atol=1e-6)
    assert api['score'] == pytest.approx(float(protocol.pred_score), abs=1e-6)
    zero_shot = fewshot(info['img_path'], 'brick')
    assert not np.allclose(api['anomaly_map'], zero_shot['anomaly_map'])
    key = fewshot._memory[0]
    fewshot(info['img_path'], 'brick', references=list(info['reference_paths']))
    assert fewshot._memory[0] == key  # the same references are encoded once


def test_zero_shot_and_category_batch_methods(mvtec):
    images = sorted(str(p) for p in (mvtec / 'brick').rglob('test/*/*.png'))
    winclip = AnomalyInferencer(tiny_anomaly_cfg('WinCLIPHead'))
    assert not winclip.uses_references
    with pytest.raises(ValueError, match='does not use normal reference images'):
        winclip(images[0], 'brick', references=images[1])
    musc = AnomalyInferencer(tiny_anomaly_cfg('MuScHead', layers=(0, 1), rscin_k=(1,)))
    assert musc.needs_category_batch
    results = musc(images + images[:1], 'brick')
    assert len(results) == 5 and all(r['anomaly_map'].shape == (64, 64) for r in results)
    with pytest.raises(ValueError, match='at least 5'):
        musc(images[:3], 'brick')


def test_errors_match_the_segmentation_api(fewshot, tmp_path):
    bad = tmp_path / 'notes.png'
    bad.write_text('not an image')
    with pytest.raises(ImageLoadError):
        fewshot(str(bad), 'brick')
    with pytest.raises(ImageLoadError):
        OVSegInferencer(dict(model=tiny_maskclip_cfg()))(str(bad))
    with pytest.raises(ImageLoadError, match='max_pixels'):
        AnomalyInferencer(tiny_anomaly_cfg(), max_pixels=100)(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match='not an anomaly segmentor'):
        AnomalyInferencer(dict(model=tiny_maskclip_cfg()))
    with pytest.raises(FileNotFoundError):
        AnomalyInferencer('missing.py')
    with pytest.raises(ValueError, match='class_name'):
        fewshot(np.zeros((8, 8, 3), np.uint8), ' ')
    with pytest.raises(ValueError, match='empty'):
        fewshot(np.zeros((8, 8, 3), np.uint8), 'brick', references=[])


def test_segmentor_still_accepts_plain_samples(fewshot):
    """predict without references and without metainfo categories: the default class name, zero-shot."""
    out = fewshot.model.predict(torch.randn(1, 3, 64, 64), [SegDataSample(metainfo=dict(img_shape=(64, 64)))])
    assert out[0].anomaly_map.data.shape == (1, 64, 64)
