"""Digests of settings and files, for steps that are redone when what decides their output changes.

    fingerprint(settings)        short sha256 of a JSON-able settings tree (keys sorted)
    changed_keys(old, new)       the dotted keys that differ, to say why a step is redone
    without_keys(tree, names)    the tree without the named keys at any depth (SCHEDULING: where/how fast)
    file_digest(path)            sha256 of a local file's bytes (a folder: of every file in it); a remote
                                 URI: its size and modification time, which cost no download
    folder_stat(path)            name, size and modification time of a folder's files (model weights: GBs
                                 that are not worth hashing on every rerun)

Pure apart from reading the files named; knows nothing of CrowdSelect.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

CHUNK = 1 << 20
# Keys that say where and how fast a step runs, not what it writes: every spec keeps its scheduling settings
# in a `resources:` section (crowdselect.core.config.resources_section); `out` and `ray` say where; an API key's
# variable name is not the key; who writes a run's shards and how long a stage may stall change no byte
SCHEDULING = frozenset({"out", "ray", "resources", "api_key_env", "shard_writer", "stall_timeout_s"})


def fingerprint(settings: Any) -> str:
    """A short stable hash of JSON-able settings.

    >>> fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def changed_keys(old: Any, new: Any, prefix: str = "") -> str:
    """Dotted keys that differ between two settings trees, for a message.

    >>> changed_keys({"k": 8, "train": {"lr": 1, "epochs": 3}}, {"k": 8, "train": {"lr": 2, "epochs": 3}})
    'train.lr'
    """
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        diffs = [changed_keys(old.get(k), new.get(k), f"{prefix}{k}.") for k in keys if old.get(k) != new.get(k)]
        return ", ".join(d for d in diffs if d) or "settings"
    return prefix.rstrip(".") or "settings"


def without_keys(tree: Any, names: frozenset[str] | set[str]) -> Any:
    """A copy of a plain tree without the keys in `names`, at any depth.

    >>> without_keys({"model": {"name": "m", "num_gpus": 1}, "jobs": [{"num_gpus": 2, "k": 1}]}, {"num_gpus"})
    {'model': {'name': 'm'}, 'jobs': [{'k': 1}]}
    """
    if isinstance(tree, dict):
        return {k: without_keys(v, names) for k, v in tree.items() if k not in names}
    if isinstance(tree, (list, tuple)):
        return [without_keys(v, names) for v in tree]
    return tree


def file_digest(path: str) -> str:
    """sha256 of a local file (a folder: of its files' relative names and bytes); a remote URI (scheme://):
    "size:mtime" from its filesystem; a path that does not exist: "missing"."""
    if "://" in path and not path.startswith("file://"):
        return _remote_stat(path)
    path = path.removeprefix("file://")
    if os.path.isdir(path):
        h = hashlib.sha256()
        for name in sorted(_walk(path)):
            h.update(f"{name}\x00{file_digest(os.path.join(path, name))}\x01".encode())
        return h.hexdigest()[:16]
    if not os.path.isfile(path):
        return "missing"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()[:16]


def folder_stat(path: str) -> str:
    """A digest of (relative name, size, mtime) of every file under a local folder or of one local file;
    the path itself for a hub id or a remote URI (nothing local to look at)."""
    if not os.path.exists(path):
        return path
    files = sorted(_walk(path)) if os.path.isdir(path) else [""]
    stats = []
    for name in files:
        st = os.stat(os.path.join(path, name) if name else path)
        stats.append([name, st.st_size, st.st_mtime_ns])
    return fingerprint(stats)


def _walk(folder: str) -> list[str]:
    return [os.path.relpath(os.path.join(root, f), folder) for root, _, files in os.walk(folder) for f in files]


def _remote_stat(uri: str) -> str:
    from crowdselect.core import storage

    try:
        fs, path = storage.filesystem(uri)
        info = fs.get_file_info(path)
    except Exception as e:  # noqa: BLE001 - an unreadable remote is named in the digest, the step redone
        return f"unreadable: {type(e).__name__}"
    return f"{info.size}:{info.mtime_ns}"
