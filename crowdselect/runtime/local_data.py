"""In-process executor of the selection engine: `LocalDataset`, the `Rows` interface on pyarrow Tables.

`LocalDataset` implements `crowdselect.runtime.rows.Rows` (what the engine asks of a dataset) with
pyarrow and numpy only: no Ray, no object store, no tasks. Like Ray Data it is lazy and works block by
block: a chain runs when something consumes it, and only `materialize()` keeps its blocks. Its contract
is Ray Data's where the engine relies on it: `map_batches` never calls its function on an empty block
(Ray's batcher drops them), batches never span blocks, blocks keep their order, numpy batches hold 2-D
(or n-D) columns as arrays (Arrow's fixed-shape tensor type here, Ray's tensor type on Ray), so both
executors give the same selection (`tests/e2e/test_executors_agree.py`).

Memory: every transform and `count`, `write_parquet` hold one block at a time (plus a few in
`parallel_map`); `take_batch` holds at most `batch_size` rows; `to_arrow_refs` / `to_numpy_refs` return
every block at once (Ray: refs), which the engine asks only of small outputs (counts and ids, candidates)
and of the embeddings k-means fits on (held whole in the driver's fit anyway). `materialize()` keeps its blocks in memory
up to `SPILL_BYTES`, then all of them in Arrow IPC files in the temp folder (as Ray's object store spills
to disk), read back one block at a time. Three operations hold a whole dataset in memory at once, where
Ray Data would shuffle it across the object store: `sort`, `groupby(...).map_groups` (the table is sorted
by key, then cut into groups) and `take_all`. The engine sorts and groups only a long table (its merge by
id holds the parsed lines, answers included), and takes all of small things only (rejected rows, per-block
sketches and counts, the tags baseline's narrow rows).

Why: on one machine, for a pool that fits in memory, starting Ray and moving every block through its
object store costs more than the work (bench/e2e_bench.py measures both against a plain script). Ray
resources (`compute=`, `num_cpus=`, `num_gpus=`) are accepted and ignored: a callable class is built
once, in this process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import numpy as np
import pyarrow as pa
import pyarrow.ipc  # noqa: F401  (pa.ipc)
import pyarrow.parquet as pq

DEFAULT_BATCH_SIZE = 1024  # Ray Data's for map_batches(batch_size="default")
SPILL_BYTES = 128 * 2**20  # a materialised dataset larger than this lives on disk, not in memory


class LocalDataset:
    """A lazy chain of pyarrow Table blocks implementing `Rows` (see the module docstring)."""

    def __init__(self, blocks: Callable[[], Iterable[pa.Table]] | list[pa.Table] | _Spilled):
        self._blocks = blocks

    def iter_blocks(self) -> Iterator[pa.Table]:
        if isinstance(self._blocks, (list, _Spilled)):
            return iter(self._blocks)
        return iter(self._blocks())

    def _then(self, fn: Callable[[pa.Table], pa.Table]) -> LocalDataset:
        return LocalDataset(lambda: (fn(b) for b in self.iter_blocks()))

    # -- transforms (lazy) -------------------------------------------------------------------------------
    def map_batches(self, fn, *, batch_format: str = "default", batch_size: int | str | None = "default",
                    fn_kwargs: dict | None = None, fn_constructor_kwargs: dict | None = None,
                    compute=None, **ray_remote_args) -> LocalDataset:
        """`fn(batch, **fn_kwargs)` per batch; a class is built once with `fn_constructor_kwargs` (the
        Ray `compute` strategy and resources do not apply here). Batches never span blocks, and an empty
        block gives no batch and no output block (as Ray's batcher, which drops empty blocks: a numpy
        round trip of zero rows cannot keep a schema, so neither executor ever asks a function for one)."""
        kwargs = fn_kwargs or {}
        size = DEFAULT_BATCH_SIZE if batch_size == "default" else batch_size

        def run() -> Iterator[pa.Table]:
            call = fn(**(fn_constructor_kwargs or {})) if isinstance(fn, type) else fn
            for block in self.iter_blocks():
                if not block.num_rows:
                    continue
                parts = [_from_batch(call(_to_batch(b, batch_format), **kwargs)) for b in _slices(block, size)]
                parts = [p for p in parts if p.num_rows or len(parts) == 1]
                yield parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")
        return LocalDataset(run)

    def select_columns(self, cols: list[str]) -> LocalDataset:
        return self._then(lambda b: b.select(cols))

    def drop_columns(self, cols: list[str]) -> LocalDataset:
        return self._then(lambda b: b.drop_columns(cols))

    def union(self, *others: LocalDataset) -> LocalDataset:
        return LocalDataset(lambda: chain(self.iter_blocks(), *(o.iter_blocks() for o in others)))

    def groupby(self, key: str, num_partitions: int | None = None) -> _Grouped:
        return _Grouped(self, key)

    def sort(self, key: str) -> LocalDataset:
        return LocalDataset(lambda: iter([_concat(self).sort_by(key)]))

    def repartition(self, num_blocks: int | None = None, target_num_rows_per_block: int | None = None, *,
                    strict: bool = False) -> LocalDataset:
        """Blocks of exactly `target_num_rows_per_block` rows in row order, the last one shorter (Ray's
        `strict=True`, kept here whatever `strict` says); holds one block's rows at a time. Ray's
        `num_blocks` (a whole-dataset shuffle into N blocks) is not needed by the engine."""
        if num_blocks is not None or not target_num_rows_per_block:
            raise ValueError("the in-process executor repartitions by target_num_rows_per_block only")
        size = target_num_rows_per_block

        def run() -> Iterator[pa.Table]:
            held: list[pa.Table] = []
            rows = 0
            for b in self.iter_blocks():
                while b.num_rows:
                    part = b.slice(0, size - rows)
                    b = b.slice(part.num_rows)
                    held.append(part)
                    rows += part.num_rows
                    if rows == size:
                        yield pa.concat_tables(held, promote_options="default")
                        held, rows = [], 0
            if rows:
                yield pa.concat_tables(held, promote_options="default")
        return LocalDataset(run)

    def random_sample(self, fraction: float, *, seed: int | None = None) -> LocalDataset:
        def sample() -> Iterator[pa.Table]:
            rng = np.random.default_rng(seed)
            for b in self.iter_blocks():
                yield b.filter(pa.array(rng.random(b.num_rows) < fraction))
        return LocalDataset(sample)

    # -- consumers -------------------------------------------------------------------------------------
    def materialize(self) -> LocalDataset:
        """Run the chain once and keep its blocks: in memory up to SPILL_BYTES, then all on disk."""
        if isinstance(self._blocks, (list, _Spilled)):
            return self
        kept: list[pa.Table] = []
        size, spilled = 0, None
        for block in self.iter_blocks():
            if spilled is not None:
                spilled.add(block)
                continue
            kept.append(block)
            size += block.nbytes
            if size > SPILL_BYTES:
                spilled = _Spilled()
                for b in kept:
                    spilled.add(b)
                kept = []
        return LocalDataset(spilled if spilled is not None else kept)

    def schema(self) -> pa.Schema | None:
        """The first block's schema (computes that block only, as Ray does)."""
        first = next(self.iter_blocks(), None)
        return first.schema if first is not None else None

    def num_blocks(self) -> int:
        if isinstance(self._blocks, (list, _Spilled)):
            return len(self._blocks)
        return sum(1 for _ in self.iter_blocks())

    def count(self) -> int:
        return sum(b.num_rows for b in self.iter_blocks())

    def take_all(self) -> list[dict]:
        return [r for b in self.iter_blocks() for r in b.to_pylist()]

    def take_batch(self, batch_size: int = 20, *, batch_format: str = "default"):
        """The first `batch_size` rows as one batch; empty blocks are passed over (as Ray's batcher does)."""
        rows, got = [], 0
        for b in self.iter_blocks():
            if not b.num_rows:
                continue
            rows.append(b.slice(0, batch_size - got))
            got += rows[-1].num_rows
            if got >= batch_size:
                break
        table = pa.concat_tables(rows, promote_options="default") if rows else pa.table({})
        return _to_batch(table, batch_format)

    def to_arrow_refs(self) -> list[pa.Table]:
        """The blocks themselves (Ray: object refs of them); `fetch` reads either."""
        return list(self.iter_blocks())

    def to_numpy_refs(self) -> list[dict[str, np.ndarray]]:
        """Every block as a numpy batch (Ray: object refs of them)."""
        return [_to_batch(b, "numpy") for b in self.iter_blocks()]

    def write_parquet(self, path: str) -> None:
        """One file per non-empty block, `part-NNNNN.parquet` in folder `path` (local or a URI)."""
        from crowdselect.core import storage

        fs, inner = storage.filesystem(path)
        fs.create_dir(inner, recursive=True)
        for i, b in enumerate(b for b in self.iter_blocks() if b.num_rows):
            pq.write_table(b, f"{inner}/part-{i:05d}.parquet", filesystem=fs)


class _Grouped:
    def __init__(self, ds: LocalDataset, key: str):
        self._ds, self._key = ds, key

    def map_groups(self, fn, *, batch_format: str = "pyarrow", fn_kwargs: dict | None = None,
                   **ray_remote_args) -> LocalDataset:
        """`fn(group table)` per distinct key, in key order (Ray's order after its shuffle is not fixed)."""
        def run() -> Iterator[pa.Table]:
            table = _concat(self._ds)
            if not table.num_rows:
                return
            table = table.sort_by(self._key)
            keys = table.column(self._key).to_numpy(zero_copy_only=False)
            starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
            bounds = np.r_[starts, len(keys)]
            yield pa.concat_tables([fn(table.slice(a, b - a), **(fn_kwargs or {}))
                                    for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
        return LocalDataset(run)


class _Spilled:
    """Blocks in Arrow IPC files (one per block) in a folder under the temp folder (TMPDIR), read back one at
    a time; the folder is removed when the dataset is garbage-collected or the process exits."""

    def __init__(self):
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="crowdselect-spill-")
        self._n = 0

    def add(self, block: pa.Table) -> None:
        with pa.OSFile(os.path.join(self._dir.name, f"{self._n:06d}.arrow"), "wb") as sink, \
                pa.ipc.new_file(sink, block.schema) as writer:
            writer.write_table(block)
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[pa.Table]:
        for i in range(self._n):
            with pa.OSFile(os.path.join(self._dir.name, f"{i:06d}.arrow"), "rb") as f:
                yield pa.ipc.open_file(f).read_all()  # copied out of the file: freed with the block


def fetch(x):
    """ray.get for an object ref or a list of them; in-process values (a LocalDataset's blocks, an in-driver
    k-means shard's replies) pass through."""
    import ray

    if isinstance(x, ray.ObjectRef) or (isinstance(x, list) and x and isinstance(x[0], ray.ObjectRef)):
        return ray.get(x)
    return x


def read_files(files: list[str], read: Callable, open_file: Callable, rows_per_block: int) -> LocalDataset:
    """A dataset of `read(open_file(path), path, rows_per_block)` blocks, file after file, in file order
    (one file is read sequentially, as in a Ray read task)."""
    def run() -> Iterator[pa.Table]:
        for path in files:
            with open_file(path) as f:
                yield from read(f, path, rows_per_block)
    return LocalDataset(run)


def parallel_map(ds: LocalDataset, fn: Callable[[pa.Table], pa.Table], threads: int) -> LocalDataset:
    """`fn` per block on `threads` threads, results in block order (Arrow and numpy release the GIL)."""
    if threads <= 1:
        return ds._then(fn)

    def run() -> Iterator[pa.Table]:
        with ThreadPoolExecutor(threads) as pool:
            pending = []
            for block in ds.iter_blocks():
                pending.append(pool.submit(fn, block))
                if len(pending) > 2 * threads:  # bounded read-ahead: memory stays a few blocks
                    yield pending.pop(0).result()
            for f in pending:
                yield f.result()
    return LocalDataset(run)


def _concat(ds: LocalDataset) -> pa.Table:
    blocks = [b for b in ds.iter_blocks() if b.num_columns]
    return pa.concat_tables(blocks, promote_options="default") if blocks else pa.table({})


def _slices(block: pa.Table, size: int | None) -> list[pa.Table]:
    if size is None or block.num_rows <= size:
        return [block]
    return [block.slice(i, size) for i in range(0, block.num_rows, size)]


def _to_batch(block: pa.Table, batch_format: str) -> pa.Table | dict[str, np.ndarray]:
    """A block as a map_batches batch: itself ("pyarrow") or a dict of numpy arrays ("numpy", Ray's
    "default"): a fixed-shape tensor column becomes one (n, *shape) array, any other column
    `to_numpy(zero_copy_only=False)` (strings and lists as object arrays, as Ray gives them)."""
    if batch_format == "pyarrow":
        return block
    if batch_format not in ("numpy", "default"):
        raise ValueError(f"batch_format {batch_format!r}: the in-process executor has pyarrow and numpy batches")
    return {name: _column_to_numpy(block.column(name)) for name in block.column_names}


def _column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    if isinstance(column.type, pa.FixedShapeTensorType):
        if column.num_chunks == 0:
            return np.zeros((0, *column.type.shape), column.type.value_type.to_pandas_dtype())
        return column.combine_chunks().to_numpy_ndarray()
    return column.to_numpy(zero_copy_only=False)


def _from_batch(batch: pa.Table | dict[str, np.ndarray]) -> pa.Table:
    """A function's output batch -> a block: numpy arrays of 2 or more dimensions become fixed-shape tensor
    columns (one tensor per row, as Ray makes its tensor columns), the rest `pa.array` (an object array of
    strings a string column, of lists or 1-D arrays a list column)."""
    if isinstance(batch, pa.Table):
        return batch
    return pa.table({name: _numpy_to_arrow(np.asarray(values)) for name, values in batch.items()})


def _numpy_to_arrow(values: np.ndarray) -> pa.Array:
    if values.ndim >= 2:
        return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(values))
    return pa.array(values)
