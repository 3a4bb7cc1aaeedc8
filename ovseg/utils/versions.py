"""Resolved versions of ovseg's main dependencies (for bug reports and CI logs).

``python ovseg/utils/versions.py`` prints them without importing the package (``python -m
ovseg.utils.versions`` works too, after registering every module); the test suite prints them in pytest's
header, and ``.ci/run`` before the slow tests.
"""
import platform
from importlib import metadata

#: Distributions whose releases change numerics or behaviour (kernels, resize, file formats).
MAIN_DEPENDENCIES = ('torch', 'torchvision', 'numpy', 'open_clip_torch', 'timm', 'mmengine', 'mmcv-lite', 'mmcv',
                     'mmsegmentation', 'opencv-python', 'opencv-python-headless', 'pillow', 'scipy',
                     'scikit-image', 'segment-anything', 'transformers')


def dependency_versions(names=MAIN_DEPENDENCIES):
    """{distribution: version} of the installed ones among ``names``, plus Python's version."""
    found = {'python': platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def format_versions(versions=None):
    """One line: ``name version, ...``."""
    versions = dependency_versions() if versions is None else versions
    return ', '.join(f'{name} {version}' for name, version in versions.items())


if __name__ == '__main__':
    print(format_versions())
