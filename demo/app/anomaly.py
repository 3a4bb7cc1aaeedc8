"""The demo's anomaly mode over :class:`ovseg.apis.AnomalyInferencer`: which configs it can serve.

Single-image methods (WinCLIP, AnoVL, AnomalyCLIP) and few-shot methods (WinCLIP+, AdaptCLIP: the page
takes normal reference images) are served; methods that score a whole category of images at once
(MuSc) cannot work on one uploaded image and are refused when the demo starts.
"""
from ovseg.apis.visualization import draw_heat_map  # noqa: F401  (re-exported for the page)


class AnomalyUnavailable(RuntimeError):
    """The anomaly mode cannot run in this installation or with this config."""


def check_anomaly_config(config):
    """Raise AnomalyUnavailable unless ``config`` names a single-image anomaly model.

    Returns:
        mmengine.Config: the loaded config.
    """
    try:
        from ovseg.apis import check_anomaly_config as check_api_config
        from ovseg.apis import load_config
    except ImportError as err:
        raise AnomalyUnavailable(f'ovseg has no anomaly inference API in this installation ({err}).') \
            from err
    try:
        cfg = load_config(str(config))
        _, head = check_api_config(cfg)
    except (FileNotFoundError, ValueError) as err:
        raise AnomalyUnavailable(f'Anomaly config {config}: {err}') from err
    if getattr(head, 'needs_category_batch', False):
        raise AnomalyUnavailable(f'{config} uses {getattr(head, "__name__", head)}, which scores a whole '
                                 f'category of images at once; the demo needs a single-image method such '
                                 f'as WinCLIP.')
    return cfg


def build_anomaly_inferencer(config, checkpoint=None, device='cpu', random_weights=False):
    """The :class:`AnomalyInferencer` of a checked config (see :func:`check_anomaly_config`)."""
    from ovseg.apis import AnomalyInferencer
    return AnomalyInferencer(check_anomaly_config(config), checkpoint, device=device,
                             random_weights=random_weights)
