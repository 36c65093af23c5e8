"""Fixtures of the unit layer (no Ray, no models)."""

import pyarrow as pa
import pytest

from crowdselect.core.records import LINE
from crowdselect.crowd import blocks
from crowdselect.crowd.blocks import parse_lines


@pytest.fixture
def per_line(monkeypatch):
    """Records the rows (their LINE) that parse_block hands to the per-line parser."""
    seen = []

    def spy(batch, rows, *args):
        seen.extend(batch.column(LINE).take(pa.array(rows, pa.int64())).to_pylist())
        return parse_lines(batch, rows, *args)

    monkeypatch.setattr(blocks, "parse_lines", spy)
    return seen
