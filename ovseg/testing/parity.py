"""Access to the parity fixtures (``$OVSEG_PARITY_DIR``, default ``../shared/parity`` from the repo root)."""
import importlib.util
import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def parity_dir(folder=None):
    """Return the parity root (or one fixture folder in it), or None when it is absent."""
    root = Path(os.environ.get('OVSEG_PARITY_DIR', REPO_ROOT.parent / 'shared' / 'parity'))
    path = root / folder if folder else root
    return path if path.is_dir() else None


def load_detweights(root=None):
    """Import ``detweights.py`` (the deterministic weight rule) from the parity root."""
    root = Path(root) if root else parity_dir()
    candidates = [root / 'detweights.py', root.parent / 'detweights.py'] if root else []
    for path in candidates:
        if path.is_file():
            spec = importlib.util.spec_from_file_location('ovseg_parity_detweights', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f'detweights.py not found near {root}')


def det_state_dict_for(module, seed, skip=('attn_mask',), root=None):
    """Deterministic state dict for every float tensor of ``module`` (names as in its state_dict)."""
    det = load_detweights(root)
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()
              if k.rsplit('.', 1)[-1] not in skip and v.is_floating_point()}
    return {k: torch.from_numpy(v) for k, v in det.det_state_dict(shapes, seed=seed).items()}
