"""Strict JSON for every file the tool writes: no bare `NaN` / `Infinity` tokens, which Python's json module
writes by default but JSON (RFC 8259), browsers, `jq` and most other readers refuse.

    dumps(obj, indent=2)   # json.dumps with non-finite floats as null, numpy scalars as numbers

A float that is not finite stands for a value that is undefined here (a mean over nothing, a loss that
diverged, a stability with no family); null says so in every reader. Values json cannot encode (paths,
dates) are written as their str(), as before. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """`obj` with every non-finite float (also numpy's) replaced by None, numpy scalars and arrays as Python.

    >>> finite({"a": [1.5, float("nan")], "b": (float("inf"), "x")})
    {'a': [1.5, None], 'b': [None, 'x']}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "tolist") and type(obj).__module__ == "numpy":  # numpy scalar or array
        return finite(obj.tolist())
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps of `finite(obj)`, refusing NaN/Infinity (`allow_nan=False`); other kwargs as json.dumps.

    >>> dumps({"mean": float("nan"), "n": 0})
    '{"mean": null, "n": 0}'
    """
    kwargs.setdefault("default", str)
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
