"""Input paths and the output folder, checked before any work (before Ray starts, imports no Ray); ownership
of the output folder: one run at a time, no stale outputs left behind.

    check_inputs(paths, flag="--input")       # a missing local file, dir or glob: UserError (exit 2)
    check_out_dir(out, flag="--out")          # an existing file or an unwritable path: UserError (exit 2)
    with OutDirLock(out):                     # DIR/.crowdselect.lock holds pid and host; a second run refuses
        remove_outputs(out, OWNED_NAMES)      # a rerun starts from no outputs of its own

A lock whose pid is gone on this host is stale and taken over; a lock from another host is left alone (its
pid cannot be checked from here), and the message says which file to remove. Remote folders (s3://, gs://)
are not locked: object stores have no atomic create-if-absent that every backend offers.
This module knows nothing of what a run writes: callers name their outputs.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import socket
import time
from pathlib import Path

import pyarrow.fs as pafs

from crowdselect.core import storage
from crowdselect.core.errors import UserError

LOCK_NAME = ".crowdselect.lock"


def check_inputs(paths: list[str], flag: str = "--input") -> None:
    """Every local path exists (a glob matches a file), an hf:// path names a dataset that answers; s3:// and
    gs:// URIs are left to the reader."""
    if not paths:
        raise UserError(f"no input: give {flag} PATH or its config key")
    for p in paths:
        if storage.scheme(p) == "hf":
            _check_hub_path(p, flag)
            continue
        if storage.is_remote(p):
            continue
        if any(ch in p for ch in "*?["):
            if not any(os.path.isfile(f) for f in glob.iglob(p, recursive=True)):
                raise UserError(f"{flag} {p}: no files match")
        elif not os.path.exists(p):
            raise UserError(f"{flag} {p}: no such file or directory")


def _check_hub_path(uri: str, flag: str) -> None:
    """An hf:// path has the dataset form and its repository answers (one request; offline: at once)."""
    try:
        storage.parse_hf_uri(uri)
    except ValueError as e:
        raise UserError(f"{flag} {e}") from None
    fs, inner = storage.filesystem(uri)
    if any(ch in inner for ch in "*?["):  # a glob: its folder must exist
        inner = posixpath.dirname(inner[:min(inner.find(ch) for ch in "*?[" if ch in inner)])
    try:
        found = fs.get_file_info(inner)
    except OSError as e:  # storage.HubError: offline, no network, refused
        raise UserError(f"{flag} {uri}: {e}") from None
    if found.type == pafs.FileType.NotFound:
        raise UserError(f"{flag} {uri}: no such file or directory on the Hugging Face Hub (a private or gated "
                        "dataset needs HF_TOKEN)")


def check_out_dir(out: str, flag: str = "--out") -> None:
    """`out` must be a folder or a path a folder can be created at; checked without creating anything.

    Refused: an existing file, a symbolic link (at `out` or above it) to nothing, the filesystem root (a
    run removes the outputs it owns in DIR: a root is nobody's run folder), a path under a file, a folder
    that cannot be written."""
    if storage.scheme(out) == "hf":
        raise UserError(f"{flag} {out}: hf:// paths are read-only inputs; write to a local folder, s3:// or gs://")
    if storage.is_remote(out):
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {out}: is an existing file, not a folder; give a folder path")
    dangling = next((a for a in [p, *p.parents] if a.is_symlink() and not a.exists()), None)
    if dangling is not None:
        raise UserError(f"{flag} {out}: {dangling} is a symbolic link to {os.readlink(dangling)}, which does "
                        "not exist; create its target or give another folder")
    if p.resolve() == Path(p.resolve().anchor):
        raise UserError(f"{flag} {out}: is the filesystem root; give a folder for this run's outputs")
    existing = next((a for a in [p, *p.parents] if a.exists()), Path("."))
    if not existing.is_dir():
        raise UserError(f"{flag} {out}: {existing} is a file, so the folder cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {out}: cannot write in {existing} (permission denied)")


def remove_outputs(out: str, names: tuple[str, ...]) -> list[str]:
    """Delete the named files/folders under `out` that exist (a previous run's); returns what was removed."""
    removed = []
    for name in names:
        uri = storage.join(out, name)
        if storage.is_file(uri):
            storage.delete_file(uri)
            removed.append(name)
        elif storage.exists(uri):
            storage.delete_dir(uri)
            removed.append(name)
    return removed


class OutDirLock:
    """A lock file in DIR with the owner's pid, host and start time; a context manager (creates DIR)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.path = None if storage.is_remote(out) else Path(out) / LOCK_NAME

    def __enter__(self) -> OutDirLock:
        if self.path is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._create():
            owner = self._owner()
            if not owner and time.time() - self._mtime() < 5:
                owner = {"pid": "?", "host": "?", "started": "just now"}
            if not self._stale(owner):
                raise UserError(
                    f"{self.out}: another crowdselect run is writing here (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, since {owner.get('started')}); wait for it, use another --out, or "
                    f"remove {self.path} if that run is gone")
            self.path.unlink(missing_ok=True)  # stale: its process is gone
            if not self._create():
                raise UserError(f"{self.out}: another crowdselect run took the folder just now ({self.path})")
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None and self._owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return True

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _owner(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _stale(owner: dict) -> bool:
        """True when the lock's process is known to be gone (same host, pid not running) or unreadable."""
        if not owner:  # unreadable or empty: stale unless its writer may still be filling it in
            return True
        if owner.get("host") != socket.gethostname() or owner.get("pid") == "?":
            return False
        try:
            if int(owner["pid"]) == os.getpid():
                return True  # a killed run's pid, reused by this very process (small pid spaces in containers)
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False
