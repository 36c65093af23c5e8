"""Typed configs from YAML plus `key=value` overrides, validated before any work starts.

`build(cls, data, file=...)` fills a dataclass tree from plain dicts and checks every value against the
field's type annotation. Every error is a `ConfigError` whose message names the file and the dotted key,
e.g. `crowd.yaml: selection.k: expected an integer, got 'ten'`. This module knows nothing of CrowdSelect.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names file and key."""


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; an unreadable or non-mapping file is a ConfigError naming the file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def set_dotted(data: dict, key: str, value: Any, *, file: str = "<overrides>") -> None:
    """Set `a.b.c` in nested dicts, creating levels as needed; `a[1].b` steps into item 1 of list `a`."""
    parts = [p for p in re.split(r"\.|(?=\[)", key) if p]
    node: Any = data
    for i, part in enumerate(parts):
        where = "".join(p if p.startswith("[") else "." + p for p in parts[: i + 1]).lstrip(".")
        last = i == len(parts) - 1
        if part.startswith("["):
            if not isinstance(node, list) or not part[1:-1].isdigit() or int(part[1:-1]) >= len(node):
                raise ConfigError(f"{file}: {where}: no such list item, cannot set {key}")
            index: Any = int(part[1:-1])
        else:
            if not isinstance(node, dict):
                parent = where[: len(where) - len(part)].rstrip(".")
                raise ConfigError(f"{file}: {parent}: is not a mapping, cannot set {key}")
            index = part
            if not last:
                node.setdefault(part, {})
        if last:
            node[index] = value
        else:
            node = node[index]


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` strings (values parsed as YAML, so `k=10` is an int) to a config dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"command line: override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        set_dotted(data, key.strip(), value, file="command line")
    return data


def build(cls: type[T], data: Any, *, file: str, key: str = "") -> T:
    """Build dataclass `cls` from `data`, checking types; errors name `file` and the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: {key or '<top>'}: expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(
            f"{file}: {where}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], file=file, key=sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{file}: {sub}: required key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as e:
            raise ConfigError(f"{file}: {key + '.' if key else ''}{e}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists, for run.json and for logging the resolved config."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _coerce(tp: Any, value: Any, *, file: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, file=file, key=key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[-1])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{file}: {key}: must be one of {', '.join(map(str, args))}, got {_show(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, file=file, key=key)
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] in (int, float):
            value = [v for v in value.split(",") if v.strip()]  # "1,1,2" from the command line
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{file}: {key}: expected a list, got {_show(value)}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, file=file, key=f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {key}: expected a mapping, got {_show(value)}")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(inner, v, file=file, key=f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{file}: {key}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{file}: {key}: expected an integer, got {_show(value)}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{file}: {key}: expected an integer, got {_show(value)}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{file}: {key}: expected a number, got {_show(value)}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{file}: {key}: expected a number, got {_show(value)}") from None
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{file}: {key}: expected a string, got {_show(value)}")
        return str(value)
    return value
