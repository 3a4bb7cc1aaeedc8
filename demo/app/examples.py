"""Example images from scikit-image's bundled data (no download), written once to a temporary
folder.

Gradio serves example files only from the working directory or the temporary folder, so the arrays
are saved as PNG files there.
"""
import tempfile
from pathlib import Path

from PIL import Image

# (scikit-image loader, file name, text-mode vocabulary, anomaly-mode object name)
EXAMPLES = (
    ('astronaut', 'astronaut.png', 'astronaut|person, flag, rocket|space shuttle, wall', 'person'),
    ('chelsea', 'chelsea_cat.png', 'cat, wall, floor|carpet', 'cat'),
    ('coffee', 'coffee.png', 'cup|coffee cup, saucer, spoon, table', 'cup'),
    ('rocket', 'rocket.png', 'rocket, sky, tower, trees', 'rocket'),
)


def example_files(folder=None):
    """Write the example images (if missing) and return their rows.

    Args:
        folder (str | Path, optional): where to write; default ``<tmp>/ovseg_demo_examples``.

    Returns:
        list[tuple[str, str, str]]: (image path, vocabulary, object name) for each example whose
        image scikit-image could load (an empty list without scikit-image).
    """
    try:
        from skimage import data
    except ImportError:
        return []
    folder = Path(folder or Path(tempfile.gettempdir()) / 'ovseg_demo_examples')
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for loader, name, vocabulary, object_name in EXAMPLES:
        path = folder / name
        if not path.is_file():
            try:
                array = getattr(data, loader)()
            except Exception:  # noqa: BLE001  a missing data file only drops that example
                continue
            tmp = path.with_suffix('.tmp.png')
            Image.fromarray(array).save(tmp)
            tmp.replace(path)  # atomic: two servers starting together never read half a file
        rows.append((str(path), vocabulary, object_name))
    return rows
