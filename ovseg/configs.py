"""Where ovseg's configs are: a config path or name -> the file, from any working directory.

Configs ship with the source tree (``configs/`` beside the package, an editable install) and inside built
wheels (``ovseg/.mim/configs``, copied by ``setup.py``, as mmseg's ``mim`` layout does). A config is given
as a path (absolute, relative to the working directory, or relative to the repository, e.g.
``'configs/maskclip/maskclip_vit-b16_ade150.py'``) or by its name (``'maskclip_vit-b16_ade150'``).
"""
import difflib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def config_roots():
    """Folders that hold ovseg's ``configs`` tree, in lookup order (those that exist)."""
    roots = [PACKAGE_DIR.parent / 'configs', PACKAGE_DIR / '.mim' / 'configs']
    return [root for root in roots if root.is_dir()]


def list_configs():
    """{name: path} of every config under the config roots (``_base_`` excluded; the first root wins)."""
    found = {}
    for root in config_roots():
        for path in sorted(root.rglob('*.py')):
            if '_base_' not in path.relative_to(root).parts:
                found.setdefault(path.stem, path)
    return found


def find_config(config):
    """The config file that ``config`` (a path or a name) refers to.

    Raises:
        FileNotFoundError: nothing matches; the message names where it looked and close names.
    """
    config = os.fspath(config)
    if os.path.isfile(config):
        return config
    rel = Path(config)
    if rel.parts and rel.parts[0] == 'configs':
        rel = Path(*rel.parts[1:])
    for root in config_roots():
        if (root / rel).is_file():
            return str(root / rel)
    configs = list_configs()
    name = rel.name[:-3] if rel.name.endswith('.py') else rel.name
    if name in configs:
        return str(configs[name])
    close = difflib.get_close_matches(name, list(configs), n=3)
    raise FileNotFoundError(f'Config not found: {config} (looked in the working directory and in '
                            f'{[str(r) for r in config_roots()] or "no config folder"})'
                            + (f'; did you mean {close}?' if close else '.'))
