"""Write mask proposals of a dataset's images as label maps in CorrCLIP's layout.

For every image of a config's test set, a proposal generator runs on the original image and its masks
are painted into one label map (ascending area, 0 = uncovered; ``proposals_to_label_map``), saved as::

    OUT_DIR/<image stem>.npz          # array 'instance_mask': (H, W) int32 at the original size

which is what CorrCLIP reads from ``instance_mask_path`` and what ``PrecomputedLabelMaps`` reads in
ovseg (``model.proposals.root``). Generators: ``sam`` (ovseg's ``SAMAutomaticProposals``: the SAM
weights given with ``--sam-checkpoint``; CorrCLIP's own ``SAMGenerator`` uses ViT-H with predicted-IoU and
stability thresholds 0.7) or ``superpixel`` (SLIC, no weights), or any registered generator given as a
Python dict literal (``--generator "dict(type='SAMAutomaticProposals', points_per_side=16)"``).

Usage::

    python tools/dataset_converters/make_label_maps.py configs/corrclip/corrclip_vit-b16_voc21.py \
        data/region_masks/voc --generator sam --sam-arch vit_h --sam-checkpoint sam_vit_h_4b8939.pth \
        [--data-root data/VOCdevkit/VOC2012] [--limit 10]
"""
import argparse
import ast
import os
import os.path as osp

import numpy as np


def build_generator(args):
    from ovseg.registry import MODELS
    if args.generator == 'sam':
        cfg = dict(type='SAMAutomaticProposals', pred_iou_thresh=args.pred_iou_thresh,
                   stability_score_thresh=args.stability_score_thresh, points_per_side=args.points_per_side,
                   sam=dict(type='SAMPredictor', arch=args.sam_arch, checkpoint=args.sam_checkpoint))
    elif args.generator == 'superpixel':
        cfg = dict(type='SuperpixelProposals')
    else:
        cfg = _literal(args.generator)
    return MODELS.build(cfg)


def _literal(text):
    """``dict(type=..., key=value)`` or ``{'type': ...}`` -> dict, without evaluating code."""
    node = ast.parse(text, mode='eval').body
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict' and not node.args:
        return {kw.arg: _literal(ast.unparse(kw.value)) if isinstance(kw.value, ast.Call)
                else ast.literal_eval(kw.value) for kw in node.keywords}
    value = ast.literal_eval(node)
    if not isinstance(value, dict):
        raise ValueError(f'--generator must be sam, superpixel or a dict literal, got {text!r}')
    return value


def image_paths(config, data_root=None):
    """Image paths of the config's test set (the dataset's own file list)."""
    from mmengine.config import Config
    from ovseg.registry import DATASETS
    import ovseg  # noqa: F401  registers ovseg's datasets
    cfg = Config.fromfile(config)
    dataset = cfg.test_dataloader.dataset
    if data_root is not None:
        dataset.data_root = data_root
    dataset.pipeline = []
    dataset = DATASETS.build(dataset)
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


def write_label_map(generator, path, out_dir):
    """Proposals of one image -> ``out_dir/<stem>.npz``; returns the output path."""
    import mmcv
    import torch
    from ovseg.models.proposals.label_maps import proposals_to_label_map
    image = mmcv.imread(path, channel_order='rgb')  # as mmseg's LoadImageFromFile reads it
    with torch.no_grad():
        out = generator(image)
    labels = proposals_to_label_map(getattr(out, 'masks', out), *image.shape[:2]).numpy().astype(np.int32)
    target = osp.join(out_dir, osp.splitext(osp.basename(path))[0] + '.npz')
    np.savez_compressed(target, instance_mask=labels)
    return target


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config whose test set is read')
    parser.add_argument('out_dir', help='output folder (PrecomputedLabelMaps root)')
    parser.add_argument('--generator', default='sam', help="sam, superpixel or a dict literal of a registered one")
    parser.add_argument('--data-root', default=None, help='override the dataset data_root')
    parser.add_argument('--sam-arch', default='vit_h')
    parser.add_argument('--sam-checkpoint', default=None)
    parser.add_argument('--points-per-side', type=int, default=32)
    parser.add_argument('--pred-iou-thresh', type=float, default=0.7)
    parser.add_argument('--stability-score-thresh', type=float, default=0.7)
    parser.add_argument('--limit', type=int, default=None, help='first N images only')
    parser.add_argument('--skip-existing', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    """Write the label maps; return the list of written files."""
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    generator = build_generator(args)
    written = []
    for path in image_paths(args.config, args.data_root)[:args.limit]:
        target = osp.join(args.out_dir, osp.splitext(osp.basename(path))[0] + '.npz')
        if args.skip_existing and osp.isfile(target):
            continue
        written.append(write_label_map(generator, path, args.out_dir))
    print(f'{len(written)} label maps written to {args.out_dir}')
    return written


if __name__ == '__main__':
    main()
