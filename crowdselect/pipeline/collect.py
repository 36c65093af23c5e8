"""A model stage's output rows into its stage folder: one Parquet file per pool shard, each written once.

Two writers give the same bytes:

- **workers** (`shard_writer: auto` for an s3:// or gs:// DIR; `workers` for a folder every node mounts):
  each Ray Data task writes the rows of its batch, shard by shard, as a part file under
  DIR/<stage>/_parts/<shard>/ and hands the driver only the keys it wrote and the part's name. Once a
  shard's keys are all in, a Ray task merges its parts into the shard file (pool order, each key once) and
  the driver records the shard in the manifest. The driver holds keys, part names and counts, never answers.
- **driver** (`auto` for a local DIR, which workers on other nodes do not see): the driver gathers the rows
  and writes each shard itself.

Either way a shard is written whole once all its keys are in; a key seen twice (a retried task) is kept once;
a key missing when the stage's rows end is an error naming shard and key. Part files of a killed run are
removed when the stage starts again (its shards were never recorded, so they are redone).

A stage that fails (an engine that dies past its restarts, a task error) or stalls (no row for
`stall_timeout_s`: an engine hung on an out-of-memory, a replica that never starts; Ray Data's own
no-progress guard is set to the same) ends in a `StageError` naming the shards written and left; rerunning
the same command resumes with the shards left.
"""

from __future__ import annotations

import functools
import io
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crowdselect.core import columns as C
from crowdselect.core import storage
from crowdselect.core.errors import StageError
from crowdselect.pipeline.store import StageStore, write_parquet

PARTS = "_parts"
PART = "part"  # the part file's name, in the rows a part writer hands back


@dataclass
class Expected:
    """The shards a stage writes, in order, and the keys each must hold (tuples of the key columns, in output
    order), asked for when first needed: a streaming reward stage learns a shard's answered keys only once
    its generators have written it."""

    shards: list[str]
    keys_of: Callable[[str], list[tuple]]
    total: int | None = None  # rows in all, when known up front (the progress bar's end)
    empty: pa.Table | None = None  # written for a shard that expects no row (every answer in it failed)

    @classmethod
    def of(cls, keys: dict[str, list[tuple]], **kw: Any) -> Expected:
        return cls(list(keys), keys.__getitem__, sum(map(len, keys.values())), **kw)


class _Shard:
    """One shard's expected keys, in output order (joined into one string each, for Arrow lookups), and which
    have come."""

    def __init__(self, keys: list[tuple]):
        self.keys = keys
        self.joined = joined_keys(keys)
        self.got = np.zeros(len(keys), dtype=bool)
        self.count = 0

    @property
    def whole(self) -> bool:
        return self.count == len(self.keys)

    def missing(self) -> list[tuple]:
        return [k for k, got in zip(self.keys, self.got, strict=True) if not got]

    def fresh(self, part: pa.Table, key_columns: tuple[str, ...]) -> np.ndarray:
        """Indices of `part`'s rows whose key is expected and new (a retried task may repeat rows; a key twice
        in `part` counts once, its first row); marks them come."""
        pos = _positions(_joined(part, key_columns), self.joined)
        rows = np.flatnonzero(pos >= 0)
        _, first = np.unique(pos[rows], return_index=True)
        rows = rows[first]
        rows = rows[~self.got[pos[rows]]]
        self.got[pos[rows]] = True
        self.count += len(rows)
        return np.sort(rows)


class _Shards(dict):
    """shard -> _Shard, filled from `keys_of` on first access."""

    def __init__(self, keys_of: Callable[[str], list[tuple]]):
        super().__init__()
        self.keys_of = keys_of

    def __missing__(self, shard: str) -> _Shard:
        self[shard] = _Shard(self.keys_of(shard))
        return self[shard]


def collect(ds, expected: Expected, keys: tuple[str, ...], store: StageStore,
            finalize: Callable[[pa.Table], pa.Table], *, workers: bool, stall_s: float | None,
            progress: bool, desc: str, upstream: Callable[[], bool] | None = None):
    """Write `ds`'s rows into `store`, one shard file per expected shard; returns the dataset that ran (for
    its stats: `stages.batch_seconds`).

    finalize: row-wise (column order and types, constants); runs where the rows are written.
    workers: Ray workers write (see the module doc), else the driver. stall_s: seconds without a row before
    the stage fails (None: wait forever). upstream: true while the stages feeding this one still run (a
    streaming reward stage): no row then is no stall."""
    from crowdselect.core.log import bar as progress_bar

    storage.delete_dir(storage.join(store.uri, PARTS))  # parts of a killed run: their shards are redone
    gather = (_Parts if workers else _Rows)(store, expected, keys, finalize)
    if workers:
        ds = ds.map_batches(PartWriter(storage.join(store.uri, PARTS), keys, finalize), batch_format="pyarrow")
    # Ray Data's own no-progress guard (30 min by default in Ray 2.60) follows the stage's: a huge model's
    # first load or a wait for autoscaled GPU nodes can take longer, and the user decides how long is a stall.
    # A stage fed as its upstream stages write is guarded by its own clock only (its reads wait on purpose).
    ds.context.execution_no_progress_timeout_s = (stall_s or -1) if upstream is None else -1
    bar = progress_bar(expected.total, desc, enabled=progress)
    try:
        for batch in _batches(ds, stall_s, desc, upstream or (lambda: False)):
            bar.update(gather.add(batch))
        gather.finish(stall_s, desc)
    except StageError as e:
        gather.settle()
        raise StageError(f"{e}; {_left(store, expected)}") from e.__cause__
    except Exception as e:  # a failed task or an engine dead past its restarts: the stage cannot finish
        gather.settle()
        raise StageError(f"{desc} failed: {_cause(e)}; {_left(store, expected)}") from e
    finally:
        bar.close()
    missing = {}
    for shard in expected.shards:
        if store.is_done(shard):
            continue
        tally = gather.shards[shard]
        if not tally.keys and expected.empty is not None:
            store.write_shard(shard, expected.empty)
        elif not tally.whole:
            missing[shard] = tally.missing()
    if missing:
        s, m = next(iter(missing.items()))
        raise StageError(f"{desc}: {sum(map(len, missing.values()))} row(s) never came back, e.g. shard {s} key "
                         f"{m[0]}; {_left(store, expected)}")
    storage.delete_dir(storage.join(store.uri, PARTS))
    return ds


def workers_write(setting: str, out: str) -> bool:
    """Whether Ray workers write the shards (`shard_writer`): "workers"/"driver" as set; "auto": workers when
    DIR is an object-store URI (s3://, gs://), where every worker sees it and the answers then never cross
    the head node; the driver for a local folder, which other nodes do not see and where, on one machine,
    the driver measured faster (bench/shard_writers.py: the workers' part files are one more write and read)."""
    if setting != "auto":
        return setting == "workers"
    return storage.is_remote(out)


def _batches(ds, stall_s: float | None, desc: str, upstream: Callable[[], bool]) -> Iterator[pa.Table]:
    """`ds`'s batches as they come; a StageError when none comes for `stall_s` seconds.

    Ray Data's own no-progress guard (set to `stall_s` in `collect`) stops the dataset when no block moves;
    it is what normally ends a stall, cleanly. Its iterator can still block where the guard does not look
    (shuffles, a writer task), so it runs in a thread and this one also waits with a clock, STALL_GRACE_S
    longer; on that stall the thread is left blocked and the run ends with the error."""
    from ray.data.exceptions import ExecutionTimeoutError

    q: queue.Queue = queue.Queue(maxsize=4)

    def pump() -> None:
        try:
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                q.put((True, batch))
            q.put((False, None))
        except BaseException as e:  # re-raised in the caller's thread
            q.put((False, e))

    threading.Thread(target=pump, name=f"rows of {desc}", daemon=True).start()
    stalled = StageError(f"{desc}: no row came back for {stall_s or 0:g} s (an engine out of memory or hung, or "
                         "replicas that cannot be placed; the Ray dashboard shows which): stopped")
    while True:
        try:
            more, item = q.get(timeout=None if stall_s is None else stall_s + STALL_GRACE_S)
        except queue.Empty:
            if upstream():  # still waiting for the stages that feed this one: not a stall
                continue
            raise stalled from None
        if not more:
            if isinstance(item, ExecutionTimeoutError):
                raise stalled from item
            if isinstance(item, BaseException):
                raise item
            return
        yield item


STALL_GRACE_S = 60.0


class _Rows:
    """The driver writer: gathers each shard's rows and writes the shard once all its keys are in."""

    def __init__(self, store: StageStore, expected: Expected, keys: tuple[str, ...],
                 finalize: Callable[[pa.Table], pa.Table]):
        self.store, self.keys, self.finalize = store, keys, finalize
        self.shards = _Shards(expected.keys_of)
        self.parts: dict[str, list[pa.Table]] = {s: [] for s in expected.shards}

    def add(self, batch: pa.Table) -> int:
        """Take a batch's rows; returns how many were new."""
        added = 0
        for shard, part, fresh in _fresh_rows(batch, self.keys, self.shards, self.parts):
            self.parts[shard].append(part.take(pa.array(fresh)))
            added += len(fresh)
            if self.shards[shard].whole:
                table = ordered(pa.concat_tables(self.parts.pop(shard), promote_options="permissive"),
                                self.shards[shard].joined, self.keys)
                table = self.finalize(table)
                self.store.write_shard(shard, table, errors=error_count(table))
        return added

    def finish(self, stall_s: float | None, desc: str) -> None:
        pass

    def settle(self) -> None:
        pass


class _Parts:
    """The workers writer: tracks the keys in each part file; merges a shard's parts (a Ray task) once whole."""

    def __init__(self, store: StageStore, expected: Expected, keys: tuple[str, ...],
                 finalize: Callable[[pa.Table], pa.Table]):
        self.store, self.keys = store, keys
        self.shards = _Shards(expected.keys_of)
        self.parts: dict[str, list[str]] = {s: [] for s in expected.shards}
        self.merging: dict[Any, str] = {}  # ObjectRef -> shard

    def add(self, batch: pa.Table) -> int:
        import ray

        added = 0
        for shard, part, fresh in _fresh_rows(batch, self.keys, self.shards, self.parts):
            names = pc.unique(part.take(pa.array(fresh)).column(PART)).to_pylist()
            self.parts[shard] += [n for n in names if n not in self.parts[shard]]
            added += len(fresh)
            if self.shards[shard].whole:
                ref = _merge_task().remote(self.store.uri, shard, self.parts.pop(shard), self.shards[shard].joined,
                                           self.keys)
                self.merging[ref] = shard
        done, _ = ray.wait(list(self.merging), num_returns=len(self.merging), timeout=0)
        self._record(done)
        return added

    def finish(self, stall_s: float | None, desc: str) -> None:
        import ray

        while self.merging:
            done, _ = ray.wait(list(self.merging), num_returns=1, timeout=stall_s)
            if not done:
                raise StageError(f"{desc}: a shard merge made no progress for {stall_s:g} s: stopped")
            self._record(done)

    def settle(self, wait_s: float = 60.0) -> None:
        """The stage failed: record the shards whose merge ends within `wait_s` (they are whole)."""
        import ray

        if self.merging:
            done, _ = ray.wait(list(self.merging), num_returns=len(self.merging), timeout=wait_s)
            for ref in done:
                try:
                    self._record([ref])
                except Exception:  # a merge that failed leaves its shard to the rerun
                    self.merging.pop(ref, None)

    def _record(self, refs: list) -> None:
        import ray

        for ref in refs:
            rows, errors = ray.get(ref)
            self.store.record_shard(self.merging.pop(ref), rows, errors)


def _fresh_rows(batch: pa.Table, keys: tuple[str, ...], shards: _Shards, pending: dict[str, Any]
                ) -> Iterator[tuple[str, pa.Table, np.ndarray]]:
    """Per shard of `batch` still pending: (shard, its rows, the indices of its new expected keys)."""
    for shard, part in _by_shard(batch):
        if shard in pending:  # else already written: whatever comes now repeats rows seen before
            yield shard, part, shards[shard].fresh(part, keys)


def _by_shard(batch: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """(shard, its rows) for each shard in `batch`."""
    for shard in pc.unique(batch.column(C.SHARD)).to_pylist():
        yield shard, batch.filter(pc.equal(batch.column(C.SHARD), shard))


class PartWriter:
    """Ray Data stage (a task per batch): writes the batch's rows of each shard as a part file under
    `parts`/<shard>/ (finalized); returns only (shard, keys, part name) per row."""

    def __init__(self, parts: str, keys: tuple[str, ...], finalize: Callable[[pa.Table], pa.Table]):
        self.parts, self.keys, self.finalize = parts, keys, finalize

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for shard, rows in _by_shard(batch):
            name = f"{uuid.uuid4().hex}.parquet"
            write_parquet(storage.join(self.parts, shard, name), self.finalize(rows))
            cols = {C.SHARD: rows.column(C.SHARD), **{k: rows.column(k) for k in self.keys if k != C.SHARD},
                    PART: pa.array([name] * rows.num_rows, pa.string())}
            out.append(pa.table(cols))
        return pa.concat_tables(out) if out else pa.table({C.SHARD: pa.array([], pa.string()),
                                                           **{k: pa.array([], pa.string()) for k in self.keys},
                                                           PART: pa.array([], pa.string())})


def merge_parts(stage_uri: str, shard: str, parts: list[str], wanted: pa.Array, keys: tuple[str, ...]
                ) -> tuple[int, int]:
    """Merge a shard's part files into its shard file (in the order of `wanted`, the joined keys; each key
    once), atomically; returns (rows, errors). The parts are removed once the shard is written."""
    folder = storage.join(stage_uri, PARTS, shard)
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(storage.join(folder, p)))) for p in parts]
    table = ordered(pa.concat_tables(tables, promote_options="permissive"), wanted, keys)
    write_parquet(storage.join(stage_uri, f"{shard}.parquet"), table)
    storage.delete_dir(folder)
    return table.num_rows, error_count(table)


@functools.cache
def _merge_task():
    import ray

    from crowdselect.runtime.resources import BOOKKEEPING_CPUS

    return ray.remote(num_cpus=BOOKKEEPING_CPUS, max_retries=3)(merge_parts)


def ordered(table: pa.Table, wanted: pa.Array, keys: tuple[str, ...]) -> pa.Table:
    """`table`'s rows whose key is in `wanted` (joined keys, `joined_keys`), each key once (its first row), in
    `wanted`'s order."""
    if not table.num_rows:
        return table.combine_chunks()
    pos = _positions(_joined(table, keys), wanted)
    rows = np.flatnonzero(pos >= 0)
    rows = rows[np.argsort(pos[rows], kind="stable")]  # by wanted position; a repeated key's first row first
    first = np.ones(len(rows), dtype=bool)
    first[1:] = pos[rows][1:] != pos[rows][:-1]
    return table.take(pa.array(rows[first])).combine_chunks()


def joined_keys(keys: list[tuple]) -> pa.Array:
    """Key tuples as the strings `_joined` makes of a table's key columns."""
    return pa.array([SEP.join(map(str, k)) for k in keys], pa.string())


def _positions(joined: pa.Array, wanted: pa.Array) -> np.ndarray:
    """Each row's position in `wanted`, -1 where absent."""
    pos = pc.index_in(joined, value_set=wanted)
    return pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _joined(table: pa.Table, keys: tuple[str, ...]) -> pa.Array:
    """The key columns as one string per row (joined by SEP, a unit separator no model name holds)."""
    cols = [table.column(k).cast(pa.string()).combine_chunks() for k in keys]
    if len(cols) == 1:
        return cols[0]
    return pc.binary_join_element_wise(*cols, SEP)


SEP = "\x1f"


def error_count(table: pa.Table) -> int:
    for col in (C.ERROR, C.error_column(C.REWARD)):
        if col in table.column_names:
            return int(pc.sum(pc.is_valid(table.column(col))).as_py() or 0)
    return 0


def _left(store: StageStore, expected: Expected) -> str:
    left = sorted(s for s in expected.shards if not store.is_done(s))
    if not left:
        return "every shard is written"
    shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
    return (f"{len(expected.shards) - len(left)} of {len(expected.shards)} shard(s) written in {store.uri}, left: {shown}; "
            "rerun the same command to do the shards left")


def _cause(e: BaseException) -> str:
    """One line for a stage's failure: the innermost error that says something. Ray and Ray Data wrap a
    task's own error (Ray Data chains an empty SystemException to its own), and the worker's traceback
    reaches the driver only as text, where the task's error is the line before "The above exception was the
    direct cause"."""
    chain, cause = [e], e
    for _ in range(10):
        inner = getattr(cause, "cause", None) or cause.__cause__
        if not isinstance(inner, BaseException) or inner in chain:
            break
        chain.append(inner)
        cause = inner
    text = str(e)
    if CHAINED in text:
        lines = [line.strip() for line in text.split(CHAINED)[0].splitlines() if line.strip()]
        if lines:
            return lines[-1]
    for cause in reversed(chain):
        first = str(cause).strip().splitlines()
        if first and first[0].strip():
            return f"{type(cause).__name__}: {first[0].strip()}"
    return type(e).__name__


CHAINED = "The above exception was the direct cause"
