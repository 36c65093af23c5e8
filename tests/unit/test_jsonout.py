"""Every JSON file the tool writes is strict JSON: undefined numbers are null, never bare NaN / Infinity."""

import json

import numpy as np
import pytest

from crowdselect.core import jsonout
from crowdselect.select.outputs import write_json


def refuse(token):
    raise ValueError(f"bare {token}")


def test_run_json_with_undefined_numbers_is_strict_json(tmp_path):
    """run.json held bare NaN (weights nan) and Infinity: `jq`, browsers and strict parsers refuse those."""
    run = {"weights": [float("nan"), 1.0, 1.0], "generator_rewards": {"a": {"n": 0, "mean": np.float64("nan"),
                                                                             "std": float("inf")}},
           "inertia": np.float32(0.5), "sizes": np.array([1, 2]), "selected": np.bool_(True), "path": tmp_path}
    write_json(str(tmp_path / "run.json"), run)
    got = json.loads((tmp_path / "run.json").read_text(), parse_constant=refuse)
    assert got == {"weights": [None, 1.0, 1.0], "generator_rewards": {"a": {"n": 0, "mean": None, "std": None}},
                   "inertia": 0.5, "sizes": [1, 2], "selected": True, "path": str(tmp_path)}


@pytest.mark.parametrize("value", [float("nan"), float("-inf"), np.float32("inf")])
def test_dumps_never_writes_a_bare_constant(value):
    assert jsonout.dumps({"x": [value, {"y": value}]}) == '{"x": [null, {"y": null}]}'
