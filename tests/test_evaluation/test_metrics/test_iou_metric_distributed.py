"""OVIoUMetric under 2-process gloo evaluation equals 1-process evaluation exactly."""
import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import DefaultSampler

from ovseg.evaluation import OVIoUMetric

CLASSES = ('a', 'b', 'c', 'd', 'e')
NUM_IMAGES = 5  # odd, so the sampler pads rank 1 with a duplicate that collection must drop


def _samples():
    """Deterministic predictions / labels; class 'e' is predicted but never in the ground truth."""
    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(NUM_IMAGES):
        gt = torch.randint(0, 4, (1, 48, 40), generator=gen)
        gt[:, :3] = 255
        pred = torch.randint(0, 5, (1, 48, 40), generator=gen)
        samples.append(dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt),
                            img_path=f'{i}.jpg', seg_map_path=f'{i}.png'))
    return samples


def _evaluate(out_dir):
    """Evaluate this process's share of the images (all of them without a process group)."""
    metric = OVIoUMetric(convention='detectron2', seen_classes=['a', 'b'], output_dir=out_dir,
                         iou_metrics=['mIoU', 'mFscore'])
    metric.dataset_meta = dict(classes=CLASSES)
    samples = _samples()
    for index in DefaultSampler(list(range(NUM_IMAGES)), shuffle=False):
        metric.process({}, [samples[index]])
    return metric.evaluate(NUM_IMAGES)


def _worker(rank, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        metrics = _evaluate(out_dir)
        if rank == 0:
            with open(f'{out_dir}/metrics.json', 'w') as f:
                json.dump(metrics, f)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one_process(tmp_path):
    single = _evaluate(str(tmp_path / 'single'))
    # fork: the children inherit the imported modules instead of paying seconds of imports each
    mp.start_processes(_worker, args=(str(tmp_path / 'init'), str(tmp_path / 'dist')), nprocs=2,
                       start_method='fork')
    assert json.loads((tmp_path / 'dist' / 'metrics.json').read_text()) == single
    reports = [
        json.loads((tmp_path / d / 'per_class_iou.json').read_text()) for d in ('single', 'dist')
    ]
    assert reports[0] == reports[1] and reports[0]['num_images'] == NUM_IMAGES
