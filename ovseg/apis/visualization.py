"""Class palette, mask overlay, legend and anomaly heat-map drawing for inference results (numpy + OpenCV)."""
import colorsys

import cv2
import numpy as np


def class_palette(num_classes):
    """Distinct, deterministic RGB colours, one per class.

    Hues step by the golden ratio so neighbouring class indices get far-apart hues whatever K is;
    saturation and value alternate over three levels so classes 3 apart remain distinguishable.

    Args:
        num_classes (int): K.

    Returns:
        np.ndarray: (K, 3) uint8 RGB.
    """
    colours = np.empty((max(int(num_classes), 0), 3), dtype=np.uint8)
    for i in range(colours.shape[0]):
        hue = (0.05 + i * 0.618033988749895) % 1.0
        sat, val = ((0.85, 0.95), (0.65, 0.80), (0.95, 0.65))[i % 3]
        colours[i] = [round(c * 255) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    return colours


def blend_mask(image, mask, palette, alpha=0.5):
    """Alpha-blend class colours over an image.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        mask (np.ndarray): (H, W) integer class indices in [0, K).
        palette (np.ndarray): (K, 3) uint8 RGB.
        alpha (float): weight of the class colour, in [0, 1]. Default 0.5.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB (uint8 arithmetic, no float copy of the image).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    colour = palette[mask]
    return cv2.addWeighted(colour, float(alpha), image, 1.0 - float(alpha), 0.0)


def _legend_rows(class_names, shares, max_rows):
    """Present classes sorted by decreasing share, as (index, label) pairs, plus a '+N more' row."""
    present = [i for i, name in enumerate(class_names) if shares.get(name, 0.0) > 0.0]
    present.sort(key=lambda i: -shares[class_names[i]])
    rows = [(i, f'{class_names[i]} {100.0 * shares[class_names[i]]:.1f}%')
            for i in present[:max_rows]]
    if len(present) > max_rows:
        rows[-1] = (None, f'+{len(present) - max_rows + 1} more')
    return rows


def draw_legend(image, class_names, shares, palette):
    """Draw a legend box (colour swatch + name + pixel share) in the top-left corner, in place.

    Only classes present in the mask are listed, largest first; the font scales with the image so
    the legend stays readable from thumbnails to 4K images, and rows that do not fit become
    '+N more'.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB, modified in place.
        class_names (Sequence[str]): K names.
        shares (dict): class name -> fraction of pixels.
        palette (np.ndarray): (K, 3) uint8 RGB.

    Returns:
        np.ndarray: ``image``.
    """
    height, width = image.shape[:2]
    scale = max(0.3, min(height, width) / 900.0)
    thickness = max(1, int(round(scale * 1.5)))
    (_, text_h), baseline = cv2.getTextSize('Ag', cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    row_h = text_h + baseline + max(2, int(4 * scale))
    pad = max(2, int(6 * scale))
    max_rows = max(1, (height - 2 * pad) // row_h)
    rows = _legend_rows(list(class_names), shares, max_rows)
    if not rows:
        return image
    text_w = max(cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]
                 for _, label in rows)
    box_w = min(width, 3 * pad + text_h + text_w)
    box_h = min(height, 2 * pad + row_h * len(rows))
    # Darken rather than paint the box so the image stays visible behind the legend.
    image[:box_h, :box_w] = (image[:box_h, :box_w] // 3).astype(np.uint8)
    for r, (index, label) in enumerate(rows):
        top = pad + r * row_h
        x_text = pad
        if index is not None:
            colour = tuple(int(c) for c in palette[index])
            cv2.rectangle(image, (pad, top), (pad + text_h, top + text_h), colour, thickness=-1)
            x_text = 2 * pad + text_h
        cv2.putText(image, label, (x_text, top + text_h), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def draw_overlay(image, mask, class_names, shares, palette=None, alpha=0.5):
    """Blend the class mask over the image and draw a legend of the classes present.

    Args:
        image (np.ndarray): (H, W, 3) uint8 RGB.
        mask (np.ndarray): (H, W) integer class indices in [0, K).
        class_names (Sequence[str]): K names.
        shares (dict): class name -> fraction of pixels (classes with share 0 are left out of the
            legend).
        palette (np.ndarray, optional): (K, 3) uint8 RGB; default :func:`class_palette`.
        alpha (float): class colour weight. Default 0.5.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB overlay (a new array).
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f'image {image.shape[:2]} and mask {mask.shape} sizes differ')
    palette = class_palette(len(class_names)) if palette is None else np.asarray(palette, np.uint8)
    overlay = blend_mask(np.ascontiguousarray(image), mask, palette, alpha)
    return draw_legend(overlay, class_names, shares, palette)


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
    values = np.clip(np.nan_to_num(np.asarray(amap, dtype=np.float32), nan=0.0), 0.0, 1.0)
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
