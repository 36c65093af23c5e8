"""Paths that may be local folders or URIs (s3://, gs://, hf://): one small API over pyarrow filesystems.

Run directories, manifests and checkpoints go through here so that `--out s3://bucket/run` works like a
local folder. URIs keep their scheme everywhere (`join`, `list_files` return URIs); only `filesystem`
and `ray_path` hand out the (filesystem, path-inside-it) pair that pyarrow, Ray Data and Ray Train take.

Endpoints and credentials come from the environment, never from config files:
- S3 and S3-compatible servers (MinIO, Ceph, moto): the usual AWS chain (instance role, AWS_PROFILE,
  AWS_ACCESS_KEY_ID/...). AWS_ENDPOINT_URL points at a non-AWS server; pyarrow's S3 client honours it
  (tests/test_storage_s3.py proves it against a real S3-API server). CROWDSELECT_S3_ENDPOINT overrides it
  for crowdselect alone (e.g. `http://minio:9000`).
- GCS: Google's default credentials. CROWDSELECT_GCS_ENDPOINT (`http://host:port`) targets an emulator or
  private endpoint; CROWDSELECT_GCS_ANONYMOUS=1 skips credentials (emulators).
- Hugging Face Hub datasets, read-only: `hf://datasets/ORG/NAME[@REV]/PATH` (PATH a file, a folder or a
  glob; REV a branch, tag or commit, `refs%2Fconvert%2Fparquet` for a ref with slashes) through
  huggingface_hub's fsspec `HfFileSystem` wrapped for pyarrow (`PyFileSystem(FSSpecHandler)`). huggingface_hub
  reads HF_TOKEN (private or gated datasets) and HF_ENDPOINT (a mirror) itself; crowdselect never reads or
  logs the token. A Hub that cannot be reached (HF_HUB_OFFLINE=1, no network) is one `HubError` (an OSError)
  saying so, raised at once: the readers report it as `PATH: cannot reach the Hugging Face Hub (offline?)`.
Ray workers must see the same variables: put them in the job's runtime_env (jobs/runtime_env.yaml), except
secrets (HF_TOKEN, keys), which belong in the nodes' environment. This module knows nothing of runs or stages.
"""

from __future__ import annotations

import datetime
import os
import posixpath
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs", "gcs", "hf")
FSSPEC_SCHEMES = ("hf",)  # served by an fsspec filesystem: Ray Data must be handed it (it cannot resolve them)
HF_FORM = "hf://datasets/ORG/NAME[@REV]/PATH"


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def scheme(uri: str) -> str:
    """"s3", "gs", ... for a URI; "file" for a local path."""
    return uri.split("://", 1)[0].lower() if is_remote(uri) else "file"


def absolute(uri: str) -> str:
    """A local path made absolute (for processes whose working directory is not the driver's, e.g. Ray
    Train workers); URIs unchanged."""
    return uri if is_remote(uri) else os.path.abspath(uri.removeprefix("file://"))


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or URI; remote filesystems are cached per bucket."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), absolute(uri)
    kind, rest = uri.split("://", 1)
    bucket = rest.split("/", 1)[0]
    fs = _remote_filesystem(kind.lower(), bucket, _endpoint_env())
    return fs, rest.rstrip("/")


def ray_path(uri: str) -> tuple[str, pafs.FileSystem | None]:
    """(path, filesystem) for Ray Data reads/writes and Ray Train's `RunConfig(storage_path,
    storage_filesystem)`. Local paths come back unchanged with None (Ray's own local handling)."""
    if not is_remote(uri):
        return absolute(uri), None
    fs, path = filesystem(uri)
    return path, fs


def ray_filesystem(uri: str) -> pafs.FileSystem | None:
    """The filesystem a Ray Data datasource must be given for `uri`: hf:// only (Ray resolves local paths,
    s3:// and gs:// itself, from the same environment)."""
    return filesystem(uri)[0] if scheme(uri) in FSSPEC_SCHEMES else None


def by_scheme(uris: list[str]) -> list[list[str]]:
    """`uris` split into runs of one scheme, order kept (a Ray datasource reads through one filesystem)."""
    runs: list[list[str]] = []
    for u in uris:
        if runs and scheme(runs[-1][-1]) == scheme(u):
            runs[-1].append(u)
        else:
            runs.append([u])
    return runs


@dataclass(frozen=True)
class HfPath:
    """The parts of `hf://datasets/ORG/NAME[@REV]/PATH`."""

    repo_id: str  # ORG/NAME
    revision: str | None
    path: str  # inside the repository ("" for its root)


def parse_hf_uri(uri: str) -> HfPath:
    """`hf://datasets/ORG/NAME[@REV][/PATH]` -> HfPath; ValueError naming the expected form otherwise.

    >>> parse_hf_uri("hf://datasets/Magpie-Align/Zoo@v1.0/data/*.parquet")
    HfPath(repo_id='Magpie-Align/Zoo', revision='v1.0', path='data/*.parquet')
    """
    rest = uri.split("://", 1)[1] if uri.lower().startswith("hf://") else ""
    parts = rest.split("/", 3)
    if len(parts) < 3 or parts[0] != "datasets" or not parts[1] or not parts[2] or parts[2].startswith("@"):
        raise ValueError(f"{uri}: an hf:// path reads a dataset repository: {HF_FORM}")
    name, _, revision = parts[2].partition("@")
    if "@" in parts[2] and not revision:
        raise ValueError(f"{uri}: empty revision after '@' ({HF_FORM})")
    return HfPath(f"{parts[1]}/{name}", revision or None, parts[3].strip("/") if len(parts) > 3 else "")


class HubError(ConnectionError):
    """The Hugging Face Hub could not be reached or refused a request; the message is one line."""


def _hub_error(e: BaseException) -> HubError | None:
    """The HubError for an exception of huggingface_hub or its HTTP client; None for anything else (a
    missing file stays FileNotFoundError, which pyarrow reads as "not found")."""
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError, HubError)):
        return None
    library = type(e).__module__.split(".")[0]
    if library not in ("huggingface_hub", "httpx", "httpx2", "requests", "urllib3") and not isinstance(e, OSError):
        return None
    reason = " ".join(str(e).split())[:300] or type(e).__name__
    if isinstance(e, ConnectionError) or "Connect" in type(e).__name__ or "Timeout" in type(e).__name__:
        return HubError(f"cannot reach the Hugging Face Hub (offline?): {reason}")
    return HubError(f"Hugging Face Hub: {reason}")


def _on_hub(call, *args):
    try:
        return call(*args)
    except Exception as e:
        err = _hub_error(e)
        if err is None:
            raise
        raise err from None


class _HubFile:
    """A file of the Hub whose reads raise HubError (pyarrow's PythonFile reads through it)."""

    def __init__(self, f: Any):
        self._f = f

    def read(self, *args):
        return _on_hub(self._f.read, *args)

    def readinto(self, buf):
        return _on_hub(self._f.readinto, buf)

    def __getattr__(self, name: str):
        return getattr(self._f, name)


class _HubHandler(pafs.FSSpecHandler):
    """pyarrow's FSSpecHandler over HfFileSystem, with the Hub's errors as one-line HubErrors."""

    def get_file_info(self, paths):
        return _on_hub(super().get_file_info, paths)

    def get_file_info_selector(self, selector):
        return _on_hub(super().get_file_info_selector, selector)

    def open_input_stream(self, path):
        import pyarrow as pa

        return pa.PythonFile(_HubFile(_on_hub(self.fs.open, path, "rb")), mode="r")

    def open_input_file(self, path):
        return self.open_input_stream(path)  # HfFileSystem files are seekable: random access for Parquet


def _hub_filesystem(endpoint: str | None = None) -> pafs.FileSystem:
    """HfFileSystem (HF_ENDPOINT read now, not at huggingface_hub's import) wrapped for pyarrow."""
    from huggingface_hub import HfFileSystem

    return pafs.PyFileSystem(_HubHandler(HfFileSystem(endpoint=endpoint)))


def _endpoint_env() -> tuple[str | None, ...]:
    # Part of the cache key, so a changed endpoint (tests, notebooks) gets a new filesystem.
    keys = ("CROWDSELECT_S3_ENDPOINT", "AWS_ENDPOINT_URL", "CROWDSELECT_GCS_ENDPOINT", "CROWDSELECT_GCS_ANONYMOUS",
            "HF_ENDPOINT", "HF_HUB_OFFLINE")
    return tuple(os.environ.get(k) for k in keys)


@lru_cache(maxsize=64)
def _remote_filesystem(kind: str, bucket: str, env: tuple[str | None, ...]) -> pafs.FileSystem:
    if kind == "hf":
        return _hub_filesystem(env[4])
    if kind == "s3" and env[0]:
        scheme_, host = _split_endpoint(env[0])
        return pafs.S3FileSystem(endpoint_override=host, scheme=scheme_,
                                 region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION"))
    if kind in ("gs", "gcs") and env[2]:
        scheme_, host = _split_endpoint(env[2])
        return pafs.GcsFileSystem(endpoint_override=host, scheme=scheme_, anonymous=env[3] == "1",
                                  retry_time_limit=datetime.timedelta(seconds=30))
    if kind in ("gs", "gcs") and env[3] == "1":
        return pafs.GcsFileSystem(anonymous=True)
    fs, _ = pafs.FileSystem.from_uri(f"{kind}://{bucket}")
    return fs


def _split_endpoint(url: str) -> tuple[str, str]:
    """"http://127.0.0.1:9000" -> ("http", "127.0.0.1:9000"); a bare host:port means https."""
    if "://" in url:
        s, host = url.split("://", 1)
        return s, host.rstrip("/")
    return "https", url.rstrip("/")


def join(uri: str, *parts: str) -> str:
    if is_remote(uri):
        kind, rest = uri.split("://", 1)
        return f"{kind}://{posixpath.join(rest, *parts)}"
    return os.path.join(uri, *parts)


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def list_files(uri: str, suffix: str = "", recursive: bool = True) -> list[str]:
    """Files under a directory URI (sorted URIs, same scheme as `uri`); [] when it does not exist."""
    fs, path = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))
    found = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(suffix))
    return [_to_uri(uri, path, p) for p in found]


def _to_uri(base_uri: str, base_path: str, path: str) -> str:
    rel = posixpath.relpath(path, base_path) if is_remote(base_uri) else os.path.relpath(path, base_path)
    return join(base_uri, rel)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file so that readers never see half of it: local writes go through a temp name and
    a rename; object stores publish an object only when its upload completes."""
    fs, path = filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(os.path.dirname(path), recursive=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with fs.open_output_stream(tmp, compression=None) as f:
            f.write(data)
        fs.move(tmp, path)
        return
    with fs.open_output_stream(path, compression=None) as f:  # bytes as given, even for a .gz name
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def delete_file(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def delete_dir(uri: str) -> None:
    """Remove a directory and everything under it; nothing happens when it does not exist."""
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return
    fs.delete_dir_contents(path, missing_dir_ok=True)
    # Object stores: a prefix without a marker object vanishes with its last file; only a marker is left.
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
