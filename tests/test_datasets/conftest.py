"""Fixtures of the dataset tests (defined in dataset_layouts.py, importable by the test modules)."""
from dataset_layouts import ade_raw, coco_stuff_raw, pc_raw  # noqa: F401
