"""Install script: metadata lives in setup.cfg, dependency lists in requirements/."""
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def read_requirements(name):
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines if ln.split('#')[0].strip()]


setup(
    install_requires=read_requirements('runtime'),
    extras_require={
        'tests': read_requirements('tests'),
        'demo': read_requirements('demo'),
        'optional': read_requirements('optional'),
        'all': read_requirements('tests') + read_requirements('demo') + read_requirements('optional'),
    },
)
