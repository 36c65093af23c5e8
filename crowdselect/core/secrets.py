"""Secrets (API keys) and the one scrub applied to every error text that is stored or printed.

A `Secret` never shows its value in a repr, a log line or an exception message, and every value wrapped in
one (on the driver, or unpickled inside a Ray actor) is remembered by this process so that
`scrub_secrets` can blank it wherever it turns up: a server that echoes the request's Authorization header
in its error body would otherwise put the key into generate/*/shard-*.parquet and crowd_excluded/.
Besides the exact values, anything shaped like a bearer token or an `sk-` key is blanked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_KNOWN: set[str] = set()  # values of every Secret made or unpickled in this process
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;}]+"),  # Authorization: Bearer <token>
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),  # OpenAI-style keys (sk-..., sk-proj-...)
)
_MIN_EXACT = 4  # shorter values would blank ordinary words


class Secret:
    """A value that never shows itself in a repr, a log line or an exception message."""

    def __init__(self, value: str):
        self._value = value
        if len(value) >= _MIN_EXACT:
            _KNOWN.add(value)

    def get(self) -> str:
        return self._value

    def __reduce__(self):  # unpickling (a Ray actor's constructor argument) registers the value there too
        return (Secret, (self._value,))

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def scrub_secrets(text: str | None, extra: Iterable[str] = ()) -> str | None:
    """`text` with every known secret value, each of `extra`, bearer tokens and `sk-` keys replaced by ***.

    >>> scrub_secrets('HTTP 401: {"auth": "Bearer abc.def-123"}')
    'HTTP 401: {"auth": "Bearer ***"}'
    >>> scrub_secrets("key sk-proj-AbC123xyz was refused")
    'key *** was refused'
    >>> _ = Secret("hunter2-value"); scrub_secrets("echo: hunter2-value!")
    'echo: ***!'
    >>> scrub_secrets(None) is None
    True
    """
    if not text:
        return text
    for value in sorted({*_KNOWN, *(e for e in extra if len(e) >= _MIN_EXACT)}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _PATTERNS[0].sub(lambda m: m.group(1) + MASK, text)
    return _PATTERNS[1].sub(MASK, text)
