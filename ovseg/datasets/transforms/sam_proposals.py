"""Loading of precomputed SAM mask proposals (FrozenSeg's mask-proposal ensemble)."""
from pathlib import Path

import numpy as np
from mmcv.transforms import BaseTransform

from ovseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadSAMProposals(BaseTransform):
    """Read an image's SAM "everything" proposals as mask logits: ``<proposal_dir>/<image stem>.npz``.

    The file holds ``logits`` (M, H, W) float mask logits in the image frame (FrozenSeg's ``preds``: SAM's
    upsampled logits of the automatic mask generator's kept masks, the released setting being ViT-H with
    ``pred_iou_thresh`` 0.8, ``stability_score_thresh`` 0.7, ``min_mask_region_area`` 100, the 50 largest
    masks) and optionally ``predicted_iou`` (M,). They go to ``results['sam_proposal_logits']``; list
    ``'sam_proposal_logits'`` in ``PackSegInputs``' / ``PackPanopticInputs``' ``meta_keys`` so that
    ``FrozenSegSegmentor(use_proposals=True)`` finds them. The file is read with ``allow_pickle=False``.

    Args:
        proposal_dir (str): folder of the ``.npz`` files.
        missing (str): 'error' (default) names the missing file; 'empty' gives no proposals (the decoder's
            masks alone, as the original does for an empty proposal list).
    """

    def __init__(self, proposal_dir, missing='error'):
        if missing not in ('error', 'empty'):
            raise ValueError(f"missing must be 'error' or 'empty', got {missing!r}")
        self.proposal_dir, self.missing = Path(proposal_dir), missing

    def transform(self, results):
        path = self.proposal_dir / (Path(results['img_path']).stem + '.npz')
        if not path.is_file():
            if self.missing == 'error':
                raise FileNotFoundError(f'SAM proposals {path} not found (LoadSAMProposals.proposal_dir)')
            height, width = results['ori_shape'][:2]
            results['sam_proposal_logits'] = np.zeros((0, height, width), np.float32)
            return results
        with np.load(path, allow_pickle=False) as data:
            if 'logits' not in data:
                raise KeyError(f"{path} has no 'logits' array (M, H, W) of mask logits")
            logits = data['logits'].astype(np.float32)
        if logits.ndim != 3:
            raise ValueError(f'{path}: logits must be (M, H, W), got {logits.shape}')
        results['sam_proposal_logits'] = logits
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(proposal_dir={str(self.proposal_dir)!r}, missing={self.missing!r})'
