"""Typed configs from YAML, CLI flags and `key=value` overrides, validated before any work starts.

`load_config(cls, path, overrides, flags=..., flag_keys=...)` is the one loader of every phase: the YAML
file, then the CLI flags that are not None, then the `key=value` overrides (later wins). It fills a
dataclass tree and checks every value against the field's type annotation (`build`). Every error is a
`ConfigError` that names where the bad value came from and the dotted key:
    crowd.yaml: selection.k: expected an integer, got 'ten'      (the file)
    --k: must be >= 1, got -5                                     (a flag)
    command line: selection.k: must be >= 1, got -5               (a key=value override)
A config class declares each field's role where it declares the field:
    resources: PoolResources = resources_section(PoolResources)   # scheduling settings, nested `resources:`
    family: str = not_output()                                    # does not change what the stage computes
`output_fields(spec)` is the spec without both (what a stored stage's fingerprint hashes), and `build` still
reads a `resources:` key written at the spec's top level (the old form) with one deprecation line:
    run.yaml: generators[2].replicas: move under resources: (resources.replicas); the top-level key is deprecated
This module knows nothing of CrowdSelect.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")

ROLE = "crowdselect.role"  # dataclasses.field metadata key of a field's role
RESOURCES = "resources"  # a nested section of scheduling settings: where and how fast, never what
NOT_OUTPUT = "not_output"  # a setting that does not change what a stage writes


def resources_section(cls: type) -> Any:
    """A field holding a nested section of scheduling settings (`resources:`: actors, GPUs, CPUs, batch
    sizes, rates, retries; Ray's `map_batches` side), left out of `output_fields`. Its keys written at the
    top level of the spec (the old form) are moved under it by `build`, with one deprecation line each."""
    return dataclasses.field(default_factory=cls, metadata={ROLE: RESOURCES})


def not_output(default: Any = dataclasses.MISSING) -> Any:
    """A field that does not change what a stage computes (a crowd member's family and size, which reward
    drives the metrics, the name of a key's variable, a throughput knob): left out of `output_fields`."""
    return dataclasses.field(default=default, metadata={ROLE: NOT_OUTPUT})


def output_fields(obj: Any) -> dict[str, Any]:
    """A config dataclass as a plain dict of the fields that decide what its stage computes: without its
    `resources_section` and `not_output` fields (the settings a stored stage's fingerprint hashes)."""
    return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if ROLE not in f.metadata}


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names file and key.

    `key` (dotted) and `reason` are set when the error comes from `build`, so that `load_config` can blame
    the flag or override that set the key instead of the file.
    """

    def __init__(self, message: str, *, key: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.reason = reason


def _error(file: str, key: str, reason: str) -> ConfigError:
    return ConfigError(f"{file}: {key or '<top>'}: {reason}", key=key, reason=reason)


OVERRIDES = "command line"


def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = (), *,
                flags: Mapping[str, Any] | None = None, flag_keys: Mapping[str, str] | None = None) -> T:
    """YAML file < CLI flags (those not None) < `key=value` overrides, built into dataclass `cls`.

    flags: flag name -> value (argparse dest, e.g. {"k": 5, "out": None}); flag_keys: flag name -> dotted
    config key ({"k": "selection.k"}; a flag missing here is its own key). A bad value is blamed on where
    it came from: `--k: must be >= 1, got -5`, `command line: selection.k: ...`, `crowd.yaml: selection.k: ...`.
    """
    file = str(path) if path else OVERRIDES
    data = load_yaml(path) if path else {}
    origins: dict[str, str] = {}  # dotted key -> the flag or override that set it last
    for flag, value in (flags or {}).items():
        if value is not None:
            key = (flag_keys or {}).get(flag, flag)
            set_dotted(data, key, value, file=f"--{flag.replace('_', '-')}")
            _claim(origins, key, f"--{flag.replace('_', '-')}")
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value, file=OVERRIDES)
        _claim(origins, key, OVERRIDES)
    try:
        return build(cls, data, file=file)
    except ConfigError as e:
        raise _blame(e, origins) from None


def _claim(origins: dict[str, str], key: str, source: str) -> None:
    for k in [k for k in origins if _under(k, key)]:
        del origins[k]  # a later layer replaced these
    origins[key] = source


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "[")


def _blame(e: ConfigError, origins: dict[str, str]) -> ConfigError:
    """The same error, re-addressed to the flag or override that set its key (the longest match)."""
    if e.key is None or e.reason is None:
        return e
    hits = [k for k in origins if _under(e.key, k)]  # the error's key or a section above it was set
    below = {origins[k] for k in origins if e.key and _under(k, e.key)}  # or a key inside it (unknown key)
    if hits:
        source = origins[max(hits, key=len)]
    elif len(below) == 1:
        source = below.pop()
    else:
        return e
    if source == OVERRIDES:
        return _error(OVERRIDES, e.key, e.reason)
    return ConfigError(f"{source}: {e.reason}", key=e.key, reason=e.reason)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; an unreadable or non-mapping file is a ConfigError naming the file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


MAX_YAML_VALUES = 100_000  # values a config may hold with its aliases expanded (configs hold hundreds)


def parse_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load` (plain data only: a `!!python/...` tag is an error) of a user's config text, refusing
    what would blow up later: aliases (`*name`) that expand to more than MAX_YAML_VALUES values (a
    "billion laughs" of 500 bytes expands to 387 million, copied by every walk of the config), an alias
    inside its own anchor (a cycle), and nesting deeper than Python's recursion. ConfigError naming `source`.
    """
    try:
        data = yaml.safe_load(text)
        size = _expanded_size(data, {}, set())
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None
    except _AliasCycle:
        raise ConfigError(f"{source}: an alias (*name) is used inside its own anchor (&name)") from None
    if size > MAX_YAML_VALUES:
        raise ConfigError(f"{source}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; "
                          "write the values out or use fewer aliases")
    return data


class _AliasCycle(Exception):
    pass


def _expanded_size(node: Any, sizes: dict[int, int], open_: set[int]) -> int:
    """Values in `node` with every alias expanded, counted once per shared object (linear time); stops
    adding once past MAX_YAML_VALUES."""
    if not isinstance(node, (dict, list)):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise _AliasCycle
    open_.add(key)
    total = 1
    for child in (node.values() if isinstance(node, dict) else node):
        total += _expanded_size(child, sizes, open_) + isinstance(node, dict)
        if total > MAX_YAML_VALUES:
            break
    open_.discard(key)
    sizes[key] = total
    return total


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


def parse_override(item: str) -> tuple[str, Any]:
    """`key.path=value` -> (key, value); the value is parsed as YAML, so `k=10` is an int."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{OVERRIDES}: override {item!r} is not of the form key=value")
    try:
        value = parse_yaml(raw, f"{OVERRIDES}: {key.strip()}") if raw.strip() else None
    except ConfigError as e:
        if "not valid YAML" not in str(e):
            raise
        value = raw  # not YAML: the text itself
    return key.strip(), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.path=value` strings to a config dict (kept for callers that build their own data)."""
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value, file=OVERRIDES)
    return data


def build(cls: type[T], data: Any, *, file: str, key: str = "") -> T:
    """Build dataclass `cls` from `data`, checking types; errors name `file` and the dotted key."""
    if not isinstance(data, dict):
        raise _error(file, key, f"expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    data = _lift_into_sections(data, fields, hints, file=file, key=key)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise _error(file, f"{where}{unknown[0]}", f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], file=file, key=sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _error(file, sub, "required key is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as e:
            sub, reason = _split_key(str(e))
            raise _error(file, ".".join(p for p in (key, sub) if p), reason) from None
    return obj


def _lift_into_sections(data: dict, fields: dict[str, dataclasses.Field], hints: dict[str, Any], *, file: str,
                        key: str) -> dict:
    """`data` with the keys of each `resources_section` that were written at the top level (the old form)
    moved under the section, each said once as deprecated; a key given in both places is a ConfigError."""
    for name, f in fields.items():
        if f.metadata.get(ROLE) != RESOURCES:
            continue
        inner = {g.name for g in dataclasses.fields(hints[name])}
        old = [k for k in data if k in inner and k not in fields]
        if not old:
            continue
        section = data.get(name) if data.get(name) is not None else {}
        if not isinstance(section, dict):
            continue  # building the section reports it
        data, section = dict(data), dict(section)
        for k in old:
            where = f"{key}.{k}" if key else k
            if k in section:
                raise _error(file, where, f"given here and as {name}.{k}; keep {name}.{k} only")
            section[k] = data.pop(k)
            _say_once(f"{file}: {where}: move under {name}: ({name}.{k}); the top-level key is deprecated")
        data[name] = section
    return data


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """A deprecation line, once per process (a config may be built more than once)."""
    if message not in _SAID:
        _SAID.add(message)
        from crowdselect.core.log import say

        say(message)


def _split_key(message: str) -> tuple[str, str]:
    """A `validate()` message "k: must be >= 1" -> ("k", "must be >= 1"); no key prefix -> ("", message)."""
    m = re.match(r"([A-Za-z_][\w.\[\]/]*): (.*)", message, re.S)
    return (m.group(1), m.group(2)) if m else ("", message)


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
        last: ConfigError | None = None
        arms = [a for a in args if a is not type(None)]
        for arg in sorted(arms, key=lambda a: a is not type(value)):  # a str stays a str in `list[str] | str`
            try:
                return _coerce(arg, value, file=file, key=key)
            except ConfigError as e:
                last = e
        raise last or _error(file, key, f"unexpected value {_show(value)}")
    if origin is Literal:
        if value not in args:
            raise _error(file, key, f"must be one of {', '.join(map(str, args))}, got {_show(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, file=file, key=key)
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] in (int, float):
            value = [v for v in value.split(",") if v.strip()]  # "1,1,2" from the command line
        elif isinstance(value, str) and args and args[0] is str:
            value = [value]  # `path: pool.jsonl` is a list of one
        if not isinstance(value, (list, tuple)):
            raise _error(file, key, f"expected a list, got {_show(value)}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, file=file, key=f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _error(file, key, f"expected a mapping, got {_show(value)}")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(inner, v, file=file, key=f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _error(file, key, f"expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _error(file, key, f"expected an integer, got {_show(value)}")
        try:
            return int(value)
        except ValueError:
            raise _error(file, key, f"expected an integer, got {_show(value)}") from None
    if tp is float:
        if isinstance(value, bool):
            raise _error(file, key, f"expected a number, got {_show(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _error(file, key, f"expected a number, got {_show(value)}") from None
        if not math.isfinite(number):  # .nan / .inf would turn every score or size into NaN downstream
            raise _error(file, key, f"expected a finite number, got {_show(value)}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise _error(file, key, f"expected a string, got {_show(value)}")
        return str(value)
    return value
