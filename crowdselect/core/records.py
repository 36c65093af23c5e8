"""One reader for every input file: listing and line/row iteration with FILE:LINE (Ray Data sources in
`crowd/ray_sources.py`, rejects in `core/rejects.py`).

Listing (`list_data_files`): files, folders (recursive), local globs and s3:// gs:// hf:// URIs (folders, files,
globs in the last path part). Inside a folder or a glob only data files are read: `.jsonl .json .ndjson
.txt .parquet .arrow`, the line formats also compressed (`.gz .zst .bz2`); the caller narrows the suffixes
(a crowd has no `.txt`). Other files (NOTES.md, plot.png, HF `dataset_info.json`/`state.json`) are skipped
and listed in `Listing.skipped` for the caller to report; hidden and `_`-prefixed files (`.DS_Store`,
`_SUCCESS`) are skipped silently. A file named explicitly is always read, by its suffix, and as JSON lines
when the suffix is unknown (`data.out`, `rows.log`): the user chose it. An empty (0-byte) file stops the
read with `FILE: file is empty` — it is almost always a failed export, never data.

Rows (`iter_records` on the driver, `JsonLinesSource`/`ParquetRowsSource` on Ray Data, both through
`iter_rows`) carry their 1-based line: the line of a JSONL/TXT file, the element of a `.json` file that
holds one JSON list (the element's index, not its text line: a pretty-printed list spans many lines), the
row of a Parquet/Arrow file. Blank lines are not rows; a UTF-8 byte-order mark opening a file is not text.
Nothing is changed silently: a line with invalid UTF-8 is a row error "invalid UTF-8 at byte N" (N 1-based
within the line), a line that is not JSON "not valid JSON (REASON at column N)", or "(nested too deeply)"
past Python's recursion limit; a file that cannot be read on (truncated or corrupt gzip/bz2/zstd, broken
Parquet) gives one row error at the line after the last complete one, after every row before it. Callers turn row
errors into `Reject`s: with policy `fail` they stop with `FILE:LINE: reason` (exit 2), with `quarantine`
they go to `rejected.jsonl` as `{source, reason, raw}` — the one rejects format of every command.
"""

from __future__ import annotations

import bz2
import fnmatch
import glob
import json
import os
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from crowdselect.core import storage
from crowdselect.core.errors import UserError
from crowdselect.core.rejects import RAW_LIMIT

FILE = "_file"
LINE = "_line"
TEXT = "_text"
ERROR = "_error"  # null when the line is fine, else the reason it cannot be used
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
TABLE_SUFFIXES = (".parquet", ".arrow")
TEXT_SUFFIXES = (".txt",)
DATA_SUFFIXES = JSON_SUFFIXES + TEXT_SUFFIXES + TABLE_SUFFIXES
METADATA_FILES = ("dataset_info.json", "state.json")  # written by HF `save_to_disk` beside the Arrow shards
JSON_EXTENSIONS = ("jsonl", "json", "ndjson", "jsonl.gz", "json.gz", "jsonl.zst", "jsonl.bz2")
PARQUET_EXTENSIONS = ("parquet",)
READ_ERRORS = (OSError, pa.ArrowException, EOFError)
JSON_ERRORS = (json.JSONDecodeError, RecursionError)  # RecursionError: a value nested ~1000 levels deep
DECOMPRESSORS = {"gzip": lambda: zlib.decompressobj(wbits=31), "bz2": bz2.BZ2Decompressor}
BOM = b"\xef\xbb\xbf"  # UTF-8 byte-order mark (Windows tools write it)
CHUNK_BYTES = 1 << 16


# ---------------------------------------------------------------- listing


def display_path(path: str) -> str:
    """Shorter path for messages: relative to the working directory when the file lies below it."""
    if "://" in path:
        return path
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path


def base_suffix(path: str) -> str:
    """".jsonl" for data.jsonl.gz, ".parquet" for a.parquet; "" when there is none."""
    root, ext = posixpath.splitext(path.lower())
    if ext in COMPRESSIONS:
        root, ext = posixpath.splitext(root)
    return ext


def compression_of(path: str) -> str | None:
    return COMPRESSIONS.get(posixpath.splitext(path.lower())[1])


def is_data_file(path: str, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> bool:
    name = posixpath.basename(path)
    if name in METADATA_FILES or base_suffix(name) not in suffixes:
        return False
    return compression_of(name) is None or base_suffix(name) not in TABLE_SUFFIXES


@dataclass
class Listing:
    files: list[str]  # in read order: given paths in order, each folder's files sorted
    skipped: dict[str, list[str]] = field(default_factory=dict)  # folder or glob -> non-data names in it
    bytes: int = 0  # total size of `files` (as stored: compressed files count compressed)

    def skipped_message(self) -> str | None:
        """"skipped 2 non-data files in data/: NOTES.md, plot.png" (one clause per folder), or None."""
        parts = [f"{len(names)} non-data file(s) in {where}: {', '.join(names[:8])}"
                 + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
                 for where, names in self.skipped.items()]
        return "skipped " + "; ".join(parts) if parts else None


def list_data_files(paths: list[str], suffixes: tuple[str, ...] = DATA_SUFFIXES, what: str = "input") -> Listing:
    """The files behind `paths` (see the module docstring); UserError for a missing path, a folder or glob
    without data files, or an empty file."""
    listing = Listing([])
    for p in paths:
        try:
            found = _expand(p, suffixes, what, listing.skipped)
        except OSError as e:  # a Hub or bucket that cannot be reached, a folder that cannot be listed
            raise UserError(f"{p}: {' '.join(str(e).split())}") from None
        new = [(f, size) for f, size in found if f not in listing.files]
        listing.files += [f for f, _ in new]
        listing.bytes += sum(size or 0 for _, size in new)
        empty = [f for f, size in found if size == 0]
        if empty:
            raise UserError(f"{display_path(empty[0])}: file is empty")
    return listing


def _expand(p: str, suffixes: tuple[str, ...], what: str, skipped: dict[str, list[str]]) -> list[tuple[str, int]]:
    """(file, size) behind one path; non-data files of a folder or glob go to `skipped[p]`."""
    fs, inner = storage.filesystem(p)
    prefix = p.split("://", 1)[0] + "://" if storage.is_remote(p) else ""
    pattern_part = posixpath.basename(inner) if storage.is_remote(p) else inner
    if any(ch in pattern_part for ch in "*?["):
        infos, base, where = _glob(p, fs, inner), _glob_base(inner), p
    else:
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.NotFound:
            raise UserError(f"{p}: no such {what} file or directory")
        if info.type == pafs.FileType.File:
            return [(p, info.size)]
        infos, base, where = fs.get_file_info(pafs.FileSelector(inner, recursive=True)), inner, p
    files = sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)
    files = [i for i in files if not posixpath.basename(i.path).startswith((".", "_"))]
    keep = [i for i in files if is_data_file(i.path, suffixes)]
    other = [posixpath.relpath(i.path, base) for i in files if not is_data_file(i.path, suffixes)]
    if other:
        skipped[p] = other
    if not keep:
        shown = f"; skipped: {', '.join(other[:8])}" if other else ""
        raise UserError(f"{where}: no {what} data files ({' '.join(suffixes)}, optionally .gz .zst .bz2){shown}")
    return [(prefix + i.path, i.size) for i in keep]


def _glob_base(inner: str) -> str:
    """The folder above the first wildcard of a glob (skipped names are shown relative to it)."""
    cut = min(inner.find(ch) for ch in "*?[" if ch in inner)
    return posixpath.dirname(inner[:cut])


def _glob(p: str, fs: pafs.FileSystem, inner: str) -> list[pafs.FileInfo]:
    if not storage.is_remote(p):
        return fs.get_file_info(sorted(glob.glob(inner, recursive=True)))
    parent, pattern = posixpath.split(inner)
    infos = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    return [i for i in infos if fnmatch.fnmatch(posixpath.basename(i.path), pattern)]


def split_by_kind(files: list[str]) -> tuple[list[str], list[str]]:
    """(JSON-lines files, Parquet files), by extension."""
    parquet = [f for f in files if base_suffix(f) == ".parquet"]
    return [f for f in files if base_suffix(f) != ".parquet"], parquet


# ---------------------------------------------------------------- lines and records


def stream_compression(path: str) -> str | None:
    """The compression a filesystem stream of `path` should undo itself: None for gzip and bz2, which
    `iter_chunks` decompresses (keeping every byte before a fault), "zstd" for Arrow's decoder."""
    codec = compression_of(path)
    return None if codec in DECOMPRESSORS else codec


def iter_chunks(stream: Any, path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Decompressed bytes of a stream opened with `stream_compression(path)`. A truncated gzip/bz2 file
    raises EOFError("Truncated compressed stream") after every byte that decompressed before the cut; a
    corrupt one OSError("gzip data is corrupt: ..."). Arrow's zstd decoder loses what its failing
    read had decompressed (at most `chunk_bytes`): the standard library has no streaming zstd decoder."""
    codec = compression_of(path)
    if codec not in DECOMPRESSORS:
        while chunk := stream.read(chunk_bytes):
            yield chunk
        return
    decoder = DECOMPRESSORS[codec]()
    while data := stream.read(chunk_bytes):
        while data:
            try:
                yield decoder.decompress(data)
            except (zlib.error, OSError) as e:  # bz2 raises OSError
                raise OSError(f"{codec} data is corrupt: {e}") from None
            data = decoder.unused_data if decoder.eof else b""
            if data:  # the next member of a multi-member file (`cat a.gz b.gz`, pbzip2)
                decoder = DECOMPRESSORS[codec]()
    if not decoder.eof:
        raise EOFError("Truncated compressed stream")


def iter_rows(stream: Any, path: str) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(n, raw bytes, None) per row of a stream opened with `stream_compression(path)`: per non-blank line
    (n: the line), or per element of a `.json` file holding one JSON list (n: the element, 1-based; the
    list is read whole). When the stream fails, one last (n, None, reason) where reading stopped. A UTF-8
    byte-order mark at the start of the file is not part of the first row."""
    chunks = iter_chunks(stream, path)
    head = b""
    try:
        while not head.lstrip(BOM + b" \t\r\n") and (chunk := next(chunks, None)) is not None:
            head += chunk
    except READ_ERRORS as e:
        yield head.count(b"\n") + 1, None, _fault(e)
        return
    head = head.removeprefix(BOM)
    if kind_of(path) == "json" and head.lstrip()[:1] == b"[":
        yield from _list_rows(head, chunks)
        return
    yield from _line_rows(chain([head], chunks))


def _fault(e: BaseException) -> str:
    return f"corrupt or truncated file ({e}); nothing from here on is read"


def _line_rows(chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes | None, str | None]]:
    pending: list[bytes] = []  # pieces of the line not yet ended (a long line spans chunks)
    lineno = 0
    while True:
        try:
            chunk = next(chunks, None)
        except READ_ERRORS as e:  # the partial line before the fault is not a row: the fault is its line
            yield lineno + 1, None, _fault(e)
            return
        if chunk is None:
            break
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        parts = (b"".join(pending) + chunk).split(b"\n")
        pending = [parts.pop()]
        for raw in parts:
            lineno += 1
            if raw.strip():
                yield lineno, raw, None
    rest = b"".join(pending)
    if rest.strip():
        yield lineno + 1, rest, None


def _list_rows(head: bytes, chunks: Iterator[bytes]) -> Iterator[tuple[int, bytes | None, str | None]]:
    """The elements of a JSON list, each as compact JSON text; one error row when the list cannot be read."""
    whole = "a .json file holding a list is read whole, so none of its rows is read"
    try:
        data = head + b"".join(chunks)
    except READ_ERRORS as e:
        yield 1, None, f"corrupt or truncated file ({e}); {whole}"
        return
    try:
        items = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        byte = e.start - data.rfind(b"\n", 0, e.start)  # 1-based within its line
        yield data.count(b"\n", 0, e.start) + 1, None, f"invalid UTF-8 at byte {byte}; {whole}"
        return
    except JSON_ERRORS as e:
        yield getattr(e, "lineno", 1), None, f"not valid JSON ({json_reason(e)}); {whole}"
        return
    for n, item in enumerate(items, start=1):
        try:
            yield n, json.dumps(item, ensure_ascii=False).encode("utf-8"), None
        except (RecursionError, ValueError) as e:
            yield n, None, f"not valid JSON ({json_reason(e)})"


def json_reason(e: BaseException) -> str:
    """Why json.loads failed, for a row error: "Expecting value at column 2", "nested too deeply"."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, json.JSONDecodeError):  # some messages end in "at" ("Invalid control character at")
        return f"{e.msg.removesuffix(' at')} at column {e.colno}"
    return str(e)


def decode_line(raw: bytes) -> tuple[str, str | None]:
    """(text, None) for valid UTF-8; else (text with U+FFFD, "invalid UTF-8 at byte N") — N 1-based."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as e:
        return raw.decode("utf-8", errors="replace"), f"invalid UTF-8 at byte {e.start + 1}"


@dataclass
class Record:
    """One input row as read: `value` is the parsed JSON value, a table row (dict) or the text of a .txt
    line; None when `error` says why the row cannot be read."""

    line: int
    value: Any
    raw: str
    error: str | None = None


def kind_of(path: str) -> str:
    """"table" (Parquet/Arrow), "json" (a JSON list or JSON lines), "text" (.txt) or "jsonl" (the rest)."""
    suffix = base_suffix(path)
    if suffix in TABLE_SUFFIXES:
        return "table"
    return {".json": "json", ".txt": "text"}.get(suffix, "jsonl")


def open_stream(path: str) -> Any:
    """A binary input stream, decompressed by suffix; UserError naming the file when it cannot be opened."""
    fs, inner = storage.filesystem(path)
    try:
        return fs.open_input_stream(inner, compression=stream_compression(path))
    except READ_ERRORS as e:
        raise UserError(f"{display_path(path)}: cannot open: {e}") from None


def open_random_access(path: str) -> Any:
    """A random-access input file (Parquet); UserError naming the file when it cannot be opened."""
    fs, inner = storage.filesystem(path)
    try:
        return fs.open_input_file(inner)
    except READ_ERRORS as e:
        raise UserError(f"{display_path(path)}: cannot open: {e}") from None


def iter_records(path: str) -> Iterator[Record]:
    """Every row of one file with its line (see the module docstring); reading errors become row errors."""
    kind = kind_of(path)
    if kind == "table":
        yield from _table_records(path)
        return
    with open_stream(path) as stream:
        for lineno, raw, error in iter_rows(stream, path):
            if raw is None:
                yield Record(lineno, None, "", error)
                continue
            text, error = decode_line(raw)
            if error or kind == "text":
                yield Record(lineno, None if error else text.rstrip("\r"), text, error)
                continue
            try:
                yield Record(lineno, json.loads(text), text)
            except JSON_ERRORS as e:
                yield Record(lineno, None, text, f"not valid JSON ({json_reason(e)})")


def _table_records(path: str) -> Iterator[Record]:
    n = 0
    try:
        for batch in _table_batches(path):
            for row in batch.to_pylist():
                n += 1
                yield Record(n, row, json.dumps(row, ensure_ascii=False, default=str)[:RAW_LIMIT])
    except READ_ERRORS as e:
        yield Record(n + 1, None, "", f"cannot read the {base_suffix(path)[1:]} file ({e})")


def _table_batches(path: str, batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
    fs, inner = storage.filesystem(path)
    with fs.open_input_file(inner) as f:
        if base_suffix(path) == ".parquet":
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size)
            return
        try:
            reader = pa.ipc.open_stream(f)  # HF datasets write Arrow streams
        except pa.ArrowInvalid:
            f.seek(0)
            file_reader = pa.ipc.open_file(f)
            yield from (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
            return
        yield from reader


def first_record(path: str) -> Record | None:
    """The first readable row of a file (for format detection), or None; errors are left to the reader."""
    for rec in iter_records(path):
        if rec.error is None:
            return rec
        return None
    return None
