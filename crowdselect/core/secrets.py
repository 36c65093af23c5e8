"""Secrets (API keys) and the one scrub applied to every error text that is stored or printed.

A `Secret` never shows its value in a repr, a log line or an exception message, and every value wrapped in
one (on the driver, or unpickled inside a Ray actor) is remembered by this process so that
`scrub_secrets` can blank it wherever it turns up: a server that echoes the request's Authorization header
in its error body would otherwise put the key into generate/*/shard-*.parquet and crowd_excluded/.
Besides the exact values, anything shaped like a bearer token, an `sk-` key or a URL's `user:password@`
is blanked too.

Configs: `scrub_config` is applied to every resolved config and lineage record a command writes
(run.json, config.yaml, train_config.yaml, summary.json, manifests); a key is never taken inline from a
config (`refuse_inline_secret`), only from the env var that `api_key_env` names (`check_env_name`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from crowdselect.core.config import ConfigError

MASK = "***"
_KNOWN: set[str] = set()  # values of every Secret made or unpickled in this process
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;}]+"),  # Authorization: Bearer <token>
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}|\bhf_[A-Za-z0-9]{30,}"),  # OpenAI-style keys (sk-proj-...), HF tokens
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@"),  # URL userinfo: https://user:KEY@host
)
# Config keys whose value is a credential (compared lower-cased, `-` as `_`): never written, never inline.
SECRET_KEYS = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth_token", "authorization",
                         "password", "secret", "bearer", "api_token", "auth"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
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
    text = _PATTERNS[1].sub(MASK, text)
    return _PATTERNS[2].sub(lambda m: m.group(1) + MASK + "@", text)


def is_secret_key(name: Any) -> bool:
    """True for a config key that names a credential (`api_key`, `token`, `Authorization`, ...)."""
    return isinstance(name, str) and name.strip().lower().replace("-", "_") in SECRET_KEYS


def scrub_config(tree: Any) -> Any:
    """A copy of a plain config tree (dicts, lists, scalars) fit to write or print: the value of every
    credential-named key is ***, and every string goes through `scrub_secrets` (URL userinfo, known keys).

    >>> scrub_config({"base_url": "https://u:pw-123@host/v1", "sampling": {"api_key": "abc", "top_p": 1}})
    {'base_url': 'https://***@host/v1', 'sampling': {'api_key': '***', 'top_p': 1}}
    """
    if isinstance(tree, dict):
        return {k: MASK if is_secret_key(k) and v not in (None, "") else scrub_config(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [scrub_config(v) for v in tree]
    if isinstance(tree, str):
        return scrub_secrets(tree)
    return tree


def check_env_name(value: str | None, key: str = "api_key_env") -> None:
    """`value` must be the NAME of an environment variable; the message never repeats the value (a key
    pasted here by mistake must not reach the terminal or a log)."""
    if value is not None and not _ENV_NAME.match(value):
        raise ConfigError(f"{key}: must be the name of an environment variable (letters, digits and _, not "
                          "starting with a digit), not the key itself; the value given is not shown. Put the "
                          "key in an environment variable and name that variable here")


def refuse_inline_secret(mapping: dict[str, Any], key: str) -> None:
    """A credential-named entry in a free-form settings mapping (`sampling`, `engine_kwargs`) is refused:
    it would be written to run.json and config.yaml (and sent in the request body). Value not shown."""
    for name in mapping:
        if is_secret_key(name):
            raise ConfigError(f"{key}.{name}: a key is never taken from the config (it would be written to "
                              "run.json and config.yaml); set it in an environment variable and name that "
                              "variable in api_key_env")
