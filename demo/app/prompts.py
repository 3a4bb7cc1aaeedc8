"""Click/box prompts as editable text: parse, extend with a click, group into objects, draw.

The page keeps the prompts in a text box so that they are visible, editable and usable from the API:
entries separated by ';' or new lines, coordinates in pixels of the uploaded image (x right,
y down)::

    +120,80          positive point
    -30,40           negative point
    box 10,10,200,150    box (x1, y1, x2, y2)
    corner 10,10     first corner of a box being drawn (the next box click completes it)
"""
import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from demo.app.limits import DemoInputError

ACTIONS = ('positive point', 'negative point', 'box corner')
_NUMBER = r'(-?\d+(?:\.\d+)?)'
_POINT = re.compile(rf'^([+-])\s*{_NUMBER}\s*,\s*{_NUMBER}$')
_BOX = re.compile(rf'^box\s+{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER}\s*,\s*{_NUMBER}$')
_CORNER = re.compile(rf'^corner\s+{_NUMBER}\s*,\s*{_NUMBER}$')

POSITIVE_RGB = (40, 220, 60)
NEGATIVE_RGB = (235, 40, 40)
BOX_RGB = (40, 140, 255)


@dataclass
class Prompts:
    """Parsed prompts in pixels of the uploaded image.

    Attributes:
        points (list[tuple[float, float, int]]): (x, y, label), label 1 positive, 0 negative.
        boxes (list[tuple[float, float, float, float]]): (x1, y1, x2, y2) with x1 < x2, y1 < y2.
        corner (tuple[float, float] | None): a box's first corner waiting for the second.
    """

    points: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    corner: tuple = None


def _entries(text):
    return [e.strip() for e in re.split(r'[;\n]', text or '') if e.strip()]


def parse_prompts(text, limits):
    """Prompt text -> :class:`Prompts`.

    Raises:
        DemoInputError: an entry that is not a point, box or corner; too many points or boxes;
            a box with no area.
    """
    if len(text or '') > limits.max_text_chars:
        raise DemoInputError(f'The prompt text is longer than {limits.max_text_chars} characters.')
    prompts = Prompts()
    for entry in _entries(text):
        low = entry.lower()
        if (m := _POINT.match(low)):
            prompts.points.append((float(m.group(2)), float(m.group(3)), int(m.group(1) == '+')))
        elif (m := _BOX.match(low)):
            x1, y1, x2, y2 = (float(v) for v in m.groups())
            x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise DemoInputError(f'Box {entry!r} has no area.')
            prompts.boxes.append((x1, y1, x2, y2))
        elif (m := _CORNER.match(low)):
            prompts.corner = (float(m.group(1)), float(m.group(2)))
        else:
            raise DemoInputError(f"Cannot read the prompt {entry[:40]!r}: use '+x,y' (positive "
                                 f"point), '-x,y' (negative point) or 'box x1,y1,x2,y2'.")
    if len(prompts.points) > limits.max_points:
        raise DemoInputError(f'{len(prompts.points)} points; the limit is {limits.max_points}.')
    if len(prompts.boxes) > limits.max_boxes:
        raise DemoInputError(f'{len(prompts.boxes)} boxes; the limit is {limits.max_boxes}.')
    return prompts


def _fmt(value):
    return f'{value:g}' if isinstance(value, float) else str(value)


def add_click(text, action, x, y):
    """Append one click to the prompt text.

    Args:
        text (str): the current prompt text.
        action (str): one of :data:`ACTIONS`.
        x (float): clicked column in pixels of the uploaded image.
        y (float): clicked row.

    Returns:
        str: the new text; a 'box corner' click after a pending corner completes the box.
    """
    if action not in ACTIONS:
        raise DemoInputError(f'Unknown click action {action!r}; choose one of {list(ACTIONS)}.')
    entries = _entries(text)
    x, y = _fmt(x), _fmt(y)
    if action == 'box corner':
        last = _CORNER.match(entries[-1].lower()) if entries else None
        if last:
            entries[-1] = f'box {last.group(1)},{last.group(2)},{x},{y}'
        else:
            entries.append(f'corner {x},{y}')
    else:
        entries.append(f'{"+" if action == "positive point" else "-"}{x},{y}')
    return '; '.join(entries)


def check_inside(prompts, size):
    """Raise DemoInputError for points outside the (H, W) image; boxes must overlap it."""
    height, width = size
    for x, y, _ in prompts.points:
        if not (0 <= x <= width and 0 <= y <= height):
            raise DemoInputError(f'Point ({x:g}, {y:g}) lies outside the {width}x{height} image.')
    for x1, y1, x2, y2 in prompts.boxes:
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise DemoInputError(f'Box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the '
                                 f'{width}x{height} image.')


def _inside(point, box):
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def group_objects(prompts):
    """One SAM query per object.

    Each box is an object, with the points that fall inside it. The points outside every box form
    one more object when at least one of them is positive; negative points alone are ignored (they
    only refine an object).

    Returns:
        list[dict]: ``points`` (P, 2) float64, ``labels`` (P,) int64 (P may be 0) and ``box``
        (4,) float64 or None, in pixels of the uploaded image.
    """
    objects = []
    owners = [next((i for i, b in enumerate(prompts.boxes) if _inside(p, b)), None)
              for p in prompts.points]
    for i, box in enumerate(prompts.boxes):
        mine = [p for p, owner in zip(prompts.points, owners) if owner == i]
        objects.append(_object(mine, box))
    free = [p for p, owner in zip(prompts.points, owners) if owner is None]
    if any(label == 1 for _, _, label in free):
        objects.append(_object(free, None))
    return objects


def _object(points, box):
    coords = np.array([(x, y) for x, y, _ in points], dtype=np.float64).reshape(-1, 2)
    labels = np.array([label for _, _, label in points], dtype=np.int64)
    return dict(points=coords, labels=labels,
                box=None if box is None else np.asarray(box, dtype=np.float64))


def draw_prompts(rgb, prompts, scale=1.0):
    """Draw points (green +, red -), boxes and a pending corner on a copy of ``rgb``.

    Args:
        rgb (np.ndarray): (h, w, 3) uint8 image (the working image).
        prompts (Prompts): in pixels of the uploaded image.
        scale (float): working size / uploaded size.

    Returns:
        np.ndarray: (h, w, 3) uint8.
    """
    out = np.ascontiguousarray(rgb).copy()
    radius = max(3, round(min(out.shape[:2]) / 80))
    thick = max(1, radius // 3)

    def px(x, y):
        return round(x * scale), round(y * scale)

    for x1, y1, x2, y2 in prompts.boxes:
        cv2.rectangle(out, px(x1, y1), px(x2, y2), BOX_RGB, thick + 1)
    if prompts.corner is not None:
        cv2.drawMarker(out, px(*prompts.corner), BOX_RGB, cv2.MARKER_CROSS, 3 * radius, thick + 1)
    for x, y, label in prompts.points:
        colour = POSITIVE_RGB if label == 1 else NEGATIVE_RGB
        cv2.circle(out, px(x, y), radius, colour, -1, cv2.LINE_AA)
        cv2.circle(out, px(x, y), radius, (255, 255, 255), thick, cv2.LINE_AA)
    return out
