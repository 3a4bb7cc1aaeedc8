"""tools/analysis/sam_proposals_benchmark.py: both generators on one image, figures and identity."""
import json
from pathlib import Path

import numpy as np
from ovseg.testing import load_tool



def _tool():
    return load_tool('analysis/sam_proposals_benchmark')


def test_runs_both_generators_and_compares(tmp_path):
    tool = _tool()
    outputs = {}
    for name in ('stock', 'ovseg'):
        out = str(tmp_path / f'{name}.npz')
        args = tool.parse_args(['--arch', 'tiny', '--sam-input-size', '256', '--size', '64',
                                '--points-per-side', '4', '--pred-iou-thresh', '0', '--stability-score-thresh',
                                '0', '--run-one', name, '--out', out])
        tool.run_one(args)
        figures = json.loads(Path(out + '.json').read_text())
        assert figures['seconds'] > 0 and figures['image_shape'] == [64, 64] and figures['num_masks'] >= 1
        outputs[name] = dict(np.load(out))
    identity = tool.compare(outputs['stock'], outputs['ovseg'])
    assert identity['same_count'] and identity['masks_identical'] and identity['boxes_identical']
    assert identity['iou_max_abs_diff'] == 0.0 and identity['stability_max_abs_diff'] == 0.0
