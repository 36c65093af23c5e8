"""The docstring examples are tests too: every module under crowdselect/ that has one is found and run.

The modules are found by walking the package's files for `>>>` (no hand-kept list), so a new example is
collected the day it is written; each must run at least one example and fail none.
"""

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "crowdselect"


def modules_with_examples() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


MODULES = modules_with_examples()


def test_the_walk_finds_the_known_examples():
    assert {"crowdselect.select.metrics", "crowdselect.reward.scoring", "crowdselect.baselines.tags"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module} has '>>>' but doctest found no example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {module} failed"
