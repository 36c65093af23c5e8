"""Paths that may be local folders or cloud URIs (s3://, gs://): one small API over pyarrow filesystems.

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
Ray workers must see the same variables: put them in the job's runtime_env (jobs/runtime_env.yaml).
This module knows nothing of runs or stages.
"""

from __future__ import annotations

import datetime
import os
import posixpath
from functools import lru_cache

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs", "gcs")


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


def _endpoint_env() -> tuple[str | None, ...]:
    # Part of the cache key, so a changed endpoint (tests, notebooks) gets a new filesystem.
    keys = ("CROWDSELECT_S3_ENDPOINT", "AWS_ENDPOINT_URL", "CROWDSELECT_GCS_ENDPOINT", "CROWDSELECT_GCS_ANONYMOUS")
    return tuple(os.environ.get(k) for k in keys)


@lru_cache(maxsize=64)
def _remote_filesystem(kind: str, bucket: str, env: tuple[str | None, ...]) -> pafs.FileSystem:
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
