import os

# Tests never touch the network: a hub lookup must fail fast instead of retrying.
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_report_header(config):
    """The resolved versions of the main dependencies, so that a red run can be diagnosed from its log."""
    from ovseg.utils.versions import format_versions
    return f'ovseg dependencies: {format_versions()}'


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
