"""The docstring examples of the pure modules are tests too."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["crowdselect.select.metrics", "crowdselect.select.selection", "crowdselect.baselines.tag_diversity",
                                    "crowdselect.core.secrets"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
