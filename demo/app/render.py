"""Page output: legend tables (HTML, every user-typed name escaped) and the click-mode overlay."""
import html

import cv2
import numpy as np

from ovseg.apis import class_palette, draw_legend

_SWATCH = ('<span style="display:inline-block;width:14px;height:14px;border-radius:3px;'
           'vertical-align:middle;background:rgb({},{},{})"></span>')


def legend_html(rows, columns, element_id):
    """A small table with a colour swatch per row.

    Args:
        rows (list[tuple]): (rgb colour or None, cell texts...) per row; texts are escaped here.
        columns (list[str]): header texts (the swatch column has none).
        element_id (str): the table's HTML id (for tests and styling).

    Returns:
        str: HTML.
    """
    head = ''.join(f'<th style="text-align:left;padding:2px 8px">{html.escape(c)}</th>'
                   for c in columns)
    body = []
    for colour, *cells in rows:
        swatch = _SWATCH.format(*colour) if colour is not None else ''
        tds = ''.join(f'<td style="padding:2px 8px">{html.escape(str(c))}</td>' for c in cells)
        body.append(f'<tr><td>{swatch}</td>{tds}</tr>')
    return (f'<table id="{element_id}" class="ovseg-legend"><thead><tr><th></th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def shares_html(class_names, shares, palette=None):
    """Legend of the text mode: every class with its pixel share, largest first."""
    palette = class_palette(len(class_names)) if palette is None else palette
    order = sorted(range(len(class_names)), key=lambda i: -shares.get(class_names[i], 0.0))
    rows = [(tuple(int(v) for v in palette[i]), class_names[i],
             f'{100.0 * shares.get(class_names[i], 0.0):.1f}%') for i in order]
    return legend_html(rows, ['class', 'pixels'], 'ovseg-shares')


def objects_overlay(rgb, masks, names, colours, alpha=0.5):
    """Colour each object mask, outline it and add a legend of the objects.

    Args:
        rgb (np.ndarray): (H, W, 3) uint8.
        masks (np.ndarray): (M, H, W) bool.
        names (list[str]): M legend labels.
        colours (np.ndarray): (M, 3) uint8 RGB.
        alpha (float): mask colour weight. Default 0.5.

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.
    """
    out = np.ascontiguousarray(rgb).copy()
    thick = max(1, round(min(out.shape[:2]) / 300))
    for mask, colour in zip(masks, colours):
        if not mask.any():
            continue
        tint = np.asarray(colour, np.float32)
        out[mask] = np.round(alpha * tint + (1 - alpha) * out[mask]).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), thick, cv2.LINE_AA)
    areas = {name: float(mask.mean()) for name, mask in zip(names, masks)}
    return draw_legend(out, names, areas, np.asarray(colours, np.uint8))
