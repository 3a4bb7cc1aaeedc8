"""Install script: metadata lives in setup.cfg, dependency lists in requirements/."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildPyWithConfigs(build_py):
    """Wheels carry the configs as package data (``ovseg/.mim/configs``, as mmseg's mim layout), so that
    ``ovseg.configs.find_config`` finds them by name; an editable install reads them from the tree."""

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False) and (HERE / 'configs').is_dir():
            shutil.copytree(HERE / 'configs', Path(self.build_lib) / 'ovseg' / '.mim' / 'configs',
                            dirs_exist_ok=True)


def read_requirements(name):
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


setup(
    cmdclass={'build_py': BuildPyWithConfigs},
    install_requires=read_requirements('runtime'),
    extras_require={
        'tests': read_requirements('tests'),
        'demo': read_requirements('demo'),
        'optional': read_requirements('optional'),
        'all': read_requirements('tests') + read_requirements('demo') + read_requirements('optional'),
    },
)
