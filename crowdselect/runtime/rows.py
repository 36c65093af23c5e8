"""The dataset interface the selection engine calls, declared once: `Rows`.

Two executors satisfy it: `ray.data.Dataset` (Ray Data, any cluster) and
`crowdselect.runtime.local_data.LocalDataset` (this process). The engine (crowd/read.py, select/job.py,
select/summary.py) types its datasets as `Rows` and calls only these methods, so either executor runs the
same wiring. Everything here is public API on both sides: blocks are pyarrow Tables, batches are pyarrow
Tables or dicts of numpy arrays, and row filters are pyarrow-compute predicates run through `map_batches`
(`filter_rows`), not an executor's own expression language.

Contract both executors keep (`tests/e2e/test_executors_agree.py` checks it end to end):
- `map_batches` never calls its function on an empty block (Ray's batcher drops them), so a function never
  has to invent a schema for zero rows;
- blocks keep their order through every stage (Ray: `preserve_order`, set by `configure_data`);
- a callable class is built once per worker (Ray: per actor; in-process: once).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

# block -> one bool per row (null counts as false); pyarrow compute only, so any executor can run it
Predicate = Callable[[pa.Table], pa.Array | pa.ChunkedArray]


class GroupedRows(Protocol):
    def map_groups(self, fn: Callable, *, batch_format: str = ..., fn_kwargs: dict | None = ...,
                   **ray_remote_args: Any) -> Rows: ...


class Rows(Protocol):
    """The dataset calls of the engine; `ray.data.Dataset` and `LocalDataset` both have them."""

    # -- transforms (lazy) ---------------------------------------------------------------------------
    def map_batches(self, fn: Callable | type, *, batch_size: int | str | None = ..., compute: Any = ...,
                    batch_format: str = ..., fn_kwargs: dict | None = ...,
                    fn_constructor_kwargs: dict | None = ..., **ray_remote_args: Any) -> Rows: ...

    def select_columns(self, cols: list[str]) -> Rows: ...

    def drop_columns(self, cols: list[str]) -> Rows: ...

    def union(self, *other: Any) -> Rows: ...

    def groupby(self, key: str, num_partitions: int | None = ...) -> GroupedRows: ...

    def sort(self, key: str) -> Rows: ...

    def repartition(self, num_blocks: int | None = ..., target_num_rows_per_block: int | None = ..., *,
                    strict: bool = ...) -> Rows: ...

    def random_sample(self, fraction: float, *, seed: int | None = ...) -> Rows: ...

    # -- consumers -----------------------------------------------------------------------------------
    def materialize(self) -> Rows: ...

    def schema(self) -> Any: ...  # has `.names`

    def count(self) -> int: ...

    def num_blocks(self) -> int: ...

    def take_all(self) -> list[dict]: ...

    def take_batch(self, batch_size: int = ..., *, batch_format: str = ...) -> Any: ...

    def to_arrow_refs(self) -> list: ...  # Ray: object refs; `local_data.fetch` reads either

    def to_numpy_refs(self) -> list: ...

    def write_parquet(self, path: str) -> None: ...


def filter_rows(rows: Rows, predicate: Predicate) -> Rows:
    """The rows for which `predicate(block)` holds (null counts as false), block by block, on either executor.

    >>> from crowdselect.runtime.local_data import LocalDataset
    >>> ds = LocalDataset([pa.table({"id": ["a", "b", "c"], "error": [None, "bad", None]})])
    >>> [r["id"] for r in filter_rows(ds, lambda b: pc.is_null(b["error"])).take_all()]
    ['a', 'c']
    """
    return rows.map_batches(partial(_keep, predicate=predicate), batch_format="pyarrow", batch_size=None)


def _keep(block: pa.Table, predicate: Predicate) -> pa.Table:
    return block.filter(pc.fill_null(predicate(block), False))
