"""Single-image zero-shot anomaly maps for the demo (any ``ZeroShotAnomalySegmentor`` config whose
head scores images one at a time, e.g. WinCLIP), and the heat-map drawing.

Heads with ``needs_category_batch`` (MuSc) score an image against the other images of its category,
so they cannot work on one uploaded image; such configs are refused when the demo starts.
"""
import cv2
import numpy as np
import torch


class AnomalyUnavailable(RuntimeError):
    """The anomaly mode cannot run in this installation or with this config."""


def check_anomaly_config(config):
    """Raise AnomalyUnavailable unless ``config`` names a single-image anomaly model.

    Returns:
        mmengine.Config: the loaded config.
    """
    try:
        from ovseg.apis import load_config
        from ovseg.models.anomaly import ZeroShotAnomalySegmentor
        from ovseg.registry import MODELS
    except ImportError as err:
        raise AnomalyUnavailable(f'ovseg has no anomaly models in this installation ({err}).') \
            from err
    try:
        cfg = load_config(str(config))
    except (FileNotFoundError, ValueError) as err:
        raise AnomalyUnavailable(f'Anomaly config {config}: {err}') from err
    kind = cfg.model.get('type')
    kind_cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if not (isinstance(kind_cls, type) and issubclass(kind_cls, ZeroShotAnomalySegmentor)):
        raise AnomalyUnavailable(f'{config} is not a ZeroShotAnomalySegmentor config.')
    head = cfg.model.get('head', {}).get('type')
    head_cls = MODELS.get(head) if isinstance(head, str) else head
    if getattr(head_cls, 'needs_category_batch', False):
        raise AnomalyUnavailable(f'{config} uses {getattr(head_cls, "__name__", head)}, which scores '
                                 f'a whole category of images at once; the demo needs a single-image '
                                 f'method such as WinCLIP.')
    return cfg


class AnomalyRunner:
    """Anomaly map and image score of one image for a typed object name.

    Args:
        config (str): a ``ZeroShotAnomalySegmentor`` config (WinCLIP).
        checkpoint (str, optional): full-model or open_clip state dict (as the inferencer).
        device (str): 'cpu' or 'cuda[:N]'. Default 'cpu'.
        random_weights (bool): random weights, nothing downloaded (smoke test). Default False.
    """

    def __init__(self, config, checkpoint=None, device='cpu', random_weights=False):
        from ovseg.apis import build_model, inference_pipeline_cfg
        from ovseg.registry import TRANSFORMS
        cfg = check_anomaly_config(config)
        self.device = torch.device(device)
        self.model = build_model(cfg, checkpoint, random_weights).to(self.device).eval()
        self.pipeline = [TRANSFORMS.build(t) for t in inference_pipeline_cfg(cfg)]

    @torch.no_grad()
    def __call__(self, rgb, object_name):
        """Score one image.

        Args:
            rgb (np.ndarray): (H, W, 3) uint8 RGB.
            object_name (str): what the image shows ('bottle'); it goes into the state prompts.

        Returns:
            tuple[np.ndarray, float]: (H, W) float32 anomaly map in [0, 1] and the image score.
        """
        results = dict(img=np.ascontiguousarray(rgb[..., ::-1]))  # mmseg pipelines take BGR
        for transform in self.pipeline:
            results = transform(results)
        batch = dict(inputs=[results['inputs']], data_samples=[results['data_samples']])
        data = self.model.data_preprocessor(batch, False)
        # The segmentor turns the metainfo 'category' into the prompt's object name.
        data['data_samples'][0].set_metainfo(dict(category=object_name))
        out = self.model.predict(data['inputs'], data['data_samples'])[0]
        amap = out.anomaly_map.data[0].float().cpu().numpy()
        return amap, float(out.pred_score)


def _jet_rgb(gray):
    """(H, W) uint8 -> (H, W, 3) uint8 RGB JET colours (C-contiguous for OpenCV drawing)."""
    return np.ascontiguousarray(cv2.applyColorMap(gray, cv2.COLORMAP_JET)[..., ::-1])


def draw_heat_map(rgb, amap, alpha=0.5):
    """Blend a JET colouring of an anomaly map in [0, 1] over the image, with a colour bar.

    The absolute scale is kept (0 blue, 1 red) rather than stretching each map to its own range, so
    that maps of different images compare.

    Args:
        rgb (np.ndarray): (H, W, 3) uint8.
        amap (np.ndarray): (H, W) float in [0, 1].
        alpha (float): heat-map weight. Default 0.5.

    Returns:
        np.ndarray: (H, W + bar, 3) uint8 RGB.
    """
    values = np.clip(np.nan_to_num(amap, nan=0.0), 0.0, 1.0)
    heat = _jet_rgb(np.round(values * 255).astype(np.uint8))
    blended = cv2.addWeighted(heat, alpha, np.ascontiguousarray(rgb), 1.0 - alpha, 0.0)
    height = blended.shape[0]
    bar_w = max(12, height // 25)
    ramp = np.linspace(255, 0, height).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
    bar = _jet_rgb(ramp)
    scale = max(0.3, height / 900)
    for text, y in (('1', int(14 * scale) + 4), ('0', height - 4)):
        cv2.putText(bar, text, (2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    max(1, int(scale * 1.5)), cv2.LINE_AA)
    gap = np.full((height, 4, 3), 255, np.uint8)
    return np.concatenate([blended, gap, bar], axis=1)
