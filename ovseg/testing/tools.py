"""Import the repository's command-line scripts (``tools/``, not a package) in tests."""
import importlib.util

from .parity import REPO_ROOT


def load_tool(relative):
    """Import ``tools/<relative>`` as a new module object.

    Args:
        relative (str): path below ``tools/``, with or without ``.py``: ``'test.py'``,
            ``'analysis/benchmark'``.

    Raises:
        FileNotFoundError: the script is not there (e.g. ovseg installed without its repository).
    """
    path = REPO_ROOT / 'tools' / relative
    if path.suffix != '.py':
        path = path.with_name(path.name + '.py')
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found: the tools/ scripts come with the repository.')
    name = 'ovseg_tool_' + '_'.join(path.relative_to(REPO_ROOT / 'tools').with_suffix('').parts)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
