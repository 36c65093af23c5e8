"""Block readers that keep where every row came from: `_file`, `_line` (and `_text`, `_error` for lines).

`json_line_blocks` and `parquet_row_blocks` read one open file into blocks; the Ray Data sources run them
in read tasks, `crowdselect.runtime.local_data.read_files` in this process. Reading errors never escape a
reader: they become `_error` rows, turned into rejects by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from ray.data.datasource import FileBasedDatasource

from crowdselect.core import storage
from crowdselect.core.records import (
    ERROR,
    FILE,
    JSON_EXTENSIONS,
    LINE,
    PARQUET_EXTENSIONS,
    READ_ERRORS,
    TEXT,
    decode_line,
    display_path,
    iter_rows,
    stream_compression,
)


class _UriNames:
    """Ray Data hands a read task the path inside the filesystem (`bucket/key`, `datasets/org/name/x`); the
    rows name the file as the user gave it (`hf://datasets/...`), as the in-process reader does."""

    def _name(self, path: str) -> str:
        return self._uris.get(path, path)

    def _remember(self, paths: list[str]) -> None:
        self._uris = {storage.filesystem(p)[1]: p for p in paths}


class JsonLinesSource(_UriNames, FileBasedDatasource):
    """JSON lines or a `.json` list (optionally compressed) streamed in blocks of `lines_per_block` rows:
    `_file`, `_line`, `_text` (the raw line; null when it cannot be read) and `_error` (null, or the reason).
    Memory per read task is bounded by the block size (a `.json` list is read whole). Reading errors never
    escape the task: they become `_error` rows."""

    _FILE_EXTENSIONS = list(JSON_EXTENSIONS)

    def __init__(self, paths: list[str], lines_per_block: int = 4096, **kwargs):
        super().__init__(paths, filesystem=storage.ray_filesystem(paths[0]), **kwargs)
        self.lines_per_block = lines_per_block
        self._remember(paths)

    def resolve_compression(self, path: str, open_args: dict) -> str | None:
        return stream_compression(path)  # gzip and bz2 are decompressed by the reader, to the last good byte

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        return json_line_blocks(f, self._name(path), self.lines_per_block)


def json_line_blocks(f, path: str, lines_per_block: int) -> Iterator[pa.Table]:
    """Blocks of `_file`, `_line`, `_text`, `_error` from a stream opened with `stream_compression(path)`
    (rows as `iter_rows` gives them: lines, or the elements of a `.json` list)."""
    name = display_path(path)
    numbers, texts, errors = [], [], []
    for lineno, raw, error in iter_rows(f, path):
        text = None
        if raw is not None:
            text, error = decode_line(raw)
        numbers.append(lineno)
        texts.append(text)
        errors.append(error)
        if len(numbers) >= lines_per_block:
            yield _line_block(name, numbers, texts, errors)
            numbers, texts, errors = [], [], []
    if numbers:
        yield _line_block(name, numbers, texts, errors)


def _line_block(name: str, numbers: list[int], texts: list[str | None], errors: list[str | None]) -> pa.Table:
    return pa.table({FILE: pa.array([name] * len(numbers), pa.string()), LINE: pa.array(numbers, pa.int64()),
                     TEXT: pa.array(texts, pa.string()), ERROR: pa.array(errors, pa.string())})


class ParquetRowsSource(_UriNames, FileBasedDatasource):
    """Parquet files batch by batch: the file's own columns plus `_file` and `_line` (1-based row). A file
    that cannot be read on gives one block of `_file`, `_line`, `_error` instead of a failed task."""

    _FILE_EXTENSIONS = list(PARQUET_EXTENSIONS)

    def __init__(self, paths: list[str], lines_per_block: int = 4096, **kwargs):
        super().__init__(paths, filesystem=storage.ray_filesystem(paths[0]), **kwargs)
        self.lines_per_block = lines_per_block
        self._remember(paths)

    def _open_input_source(self, filesystem, path: str, **open_args):
        return filesystem.open_input_file(path)  # Parquet needs random access

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        return parquet_row_blocks(f, self._name(path), self.lines_per_block)


def parquet_row_blocks(f, path: str, rows_per_block: int) -> Iterator[pa.Table]:
    """Blocks of the file's columns + `_file`, `_line` from a random-access Parquet file; a file that cannot
    be read on gives one block of `_file`, `_line`, `_error`."""
    name = display_path(path)
    start = 1
    try:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=rows_per_block):
            n = batch.num_rows
            table = pa.Table.from_batches([batch])
            table = table.append_column(FILE, pa.array([name] * n, pa.string()))
            table = table.append_column(LINE, pa.array(range(start, start + n), pa.int64()))
            start += n
            yield table
    except READ_ERRORS as e:
        yield pa.table({FILE: pa.array([name], pa.string()), LINE: pa.array([start], pa.int64()),
                        ERROR: pa.array([f"cannot read the parquet file ({e})"], pa.string())})
