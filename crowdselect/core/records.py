"""Ray Data sources that keep where every row came from: blocks carry `_file` and `_line` columns.

- `JsonLinesSource`: JSONL files (optionally compressed), streamed in chunks of `lines_per_block` lines;
  a block holds `_file`, `_line`, `_text` (the raw line). Blank lines are not rows.
- `ParquetRowsSource`: Parquet files read batch by batch; a block holds the file's own columns plus
  `_file` and `_line` (1-based row number in that file).
Memory per read task is bounded by the block size, not the file or pool size. Local paths, directories,
globs and cloud URIs (s3://, gs://) resolve through Ray Data's file listing.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

FILE = "_file"
LINE = "_line"
TEXT = "_text"
JSON_EXTENSIONS = ("jsonl", "json", "ndjson", "jsonl.gz", "json.gz", "jsonl.zst", "jsonl.bz2")
PARQUET_EXTENSIONS = ("parquet",)


def display_path(path: str) -> str:
    """Shorter path for messages: relative to the working directory when the file lies below it."""
    if "://" in path:
        return path
    cwd = os.getcwd()
    return os.path.relpath(path, cwd) if path.startswith(cwd + os.sep) else path


class JsonLinesSource(FileBasedDatasource):
    _FILE_EXTENSIONS = list(JSON_EXTENSIONS)

    def __init__(self, paths, lines_per_block: int = 4096, **kwargs):
        super().__init__(paths, **kwargs)
        self.lines_per_block = lines_per_block

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        name = display_path(path)
        lines, numbers = [], []
        rest = b""
        lineno = 0
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            parts = (rest + chunk).split(b"\n")
            rest = parts.pop()
            for raw in parts:
                lineno += 1
                if raw.strip():
                    lines.append(raw.decode("utf-8", errors="replace"))
                    numbers.append(lineno)
            if len(lines) >= self.lines_per_block:
                yield _line_block(name, numbers, lines)
                lines, numbers = [], []
        if rest.strip():
            lines.append(rest.decode("utf-8", errors="replace"))
            numbers.append(lineno + 1)
        if lines:
            yield _line_block(name, numbers, lines)


def _line_block(name: str, numbers: list[int], lines: list[str]) -> pa.Table:
    return pa.table({FILE: pa.array([name] * len(lines), pa.string()), LINE: pa.array(numbers, pa.int64()),
                     TEXT: pa.array(lines, pa.string())})


class ParquetRowsSource(FileBasedDatasource):
    _FILE_EXTENSIONS = list(PARQUET_EXTENSIONS)

    def __init__(self, paths, lines_per_block: int = 4096, **kwargs):
        super().__init__(paths, **kwargs)
        self.lines_per_block = lines_per_block

    def _open_input_source(self, filesystem, path: str, **open_args):
        return filesystem.open_input_file(path)  # Parquet needs random access

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        name = display_path(path)
        start = 1
        for batch in pq.ParquetFile(f).iter_batches(batch_size=self.lines_per_block):
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            table = table.append_column(FILE, pa.array([name] * n, pa.string()))
            table = table.append_column(LINE, pa.array(range(start, start + n), pa.int64()))
            start += n
            yield table


def expand_paths(paths: list[str]) -> list[str]:
    """Files behind paths, directories (recursive) and local globs; hidden/underscore files skipped.

    A path that does not exist raises FileNotFoundError naming it.
    """
    from crowdselect.core import storage

    out: list[str] = []
    for p in paths:
        if not storage.is_remote(p) and any(ch in p for ch in "*?["):
            found = sorted(glob.glob(p, recursive=True))
            if not found:
                raise FileNotFoundError(f"{p}: no files match")
            out += [f for f in found if os.path.isfile(f)]
            continue
        fs, path = storage.filesystem(p)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{p}: no such file or directory")
        if info.type != pafs.FileType.Directory:
            out.append(p)
            continue
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File
                       and not os.path.basename(i.path).startswith((".", "_")))
        prefix = p.split("://", 1)[0] + "://" if storage.is_remote(p) else ""
        out += [prefix + f for f in files]
    return out


def split_by_kind(files: list[str]) -> tuple[list[str], list[str]]:
    """(JSON-lines files, Parquet files), by extension."""
    parquet = [f for f in files if f.endswith(PARQUET_EXTENSIONS)]
    return [f for f in files if not f.endswith(PARQUET_EXTENSIONS)], parquet
