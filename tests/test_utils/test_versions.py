"""ovseg.utils.versions: the dependency versions printed in pytest's header and by the CLI."""
from ovseg.utils.versions import dependency_versions, format_versions


def test_dependency_versions_lists_installed_main_dependencies():
    import numpy
    import torch
    found = dependency_versions()
    assert found['numpy'] == numpy.__version__
    assert found['torch'].split('+')[0] == torch.__version__.split('+')[0]
    assert 'not-a-real-distribution' not in dependency_versions(('not-a-real-distribution',))
    assert format_versions({'a': '1', 'b': '2'}) == 'a 1, b 2'

