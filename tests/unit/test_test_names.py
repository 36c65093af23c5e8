"""Every test file's name is unique across the layers: pytest imports them as top-level modules (no packages
under tests/), so a second tests/*/test_x.py stops the whole collection with "import file mismatch"."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_names_are_unique_across_layers():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
