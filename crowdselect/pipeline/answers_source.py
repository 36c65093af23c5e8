"""The reward stage's input, shard by shard as the generators write it: a Ray Data datasource.

One read task per pool shard: it waits until every generator has written that shard (its file exists:
shard files are written whole, under a temp name then renamed, or as a finished object), then reads the
answers of all generators for it. Started beside its generators (`schedule: packed`), the reward model thus
scores a shard as soon as the whole crowd has answered it; started after them, nothing waits.

Read tasks reserve no CPU and at most READ_AHEAD wait at once, in shard order. A waiting task must not
hold CPU a generator's own tasks need: with even 0.01 CPU each, four waiting reads took the last free CPU
from a generator's 1-CPU tasks on the multi-node test cluster and the job waited for ever. The price: Ray
may run them on a head node that advertises 0 CPUs to keep data work away from it. A failed generator sets the run's stop flag (Ray's key-value store,
seen on every node): the waiting tasks then raise, and the reward stage ends instead of waiting for a shard
that will never come.
"""

from __future__ import annotations

import io
import time
import uuid
from functools import partial

import pyarrow as pa
import pyarrow.parquet as pq

from crowdselect.core import columns as C
from crowdselect.core import storage

READ_AHEAD = 4  # read tasks in flight: shards waited for at once
POLL_S = 1.0
COLUMNS = [C.ID, C.INSTRUCTION, C.SHARD, C.MODEL, C.RESPONSE, C.ERROR]


def answers(shards: list[str], files: dict[str, list[str]], stop: str):
    """A Dataset of the generators' rows for `shards` (files[shard]: one file per generator, in crowd order),
    each shard read once all its files exist; `stop` names the run's stop flag (`new_stop_flag`)."""
    import ray

    source = _answers_source(shards, files, stop)
    return ray.data.read_datasource(source, num_cpus=0, concurrency=READ_AHEAD, override_num_blocks=len(shards))


def _answers_source(shards: list[str], files: dict[str, list[str]], stop: str):
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class AnswersSource(Datasource):
        def estimate_inmemory_data_size(self) -> None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context=None) -> list[ReadTask]:
            meta = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(partial(read_when_written, files[s], stop), meta) for s in shards]

    return AnswersSource()


def read_when_written(files: list[str], stop: str) -> list[pa.Table]:
    """The rows of `files` once all exist (one block); raises once the run's stop flag is set."""
    while not all(storage.exists(f) for f in files):
        if is_stopped(stop):
            raise RuntimeError("a generator stage failed: its shards will not come")
        time.sleep(POLL_S)
    tables = [pq.read_table(io.BytesIO(storage.read_bytes(f)), columns=COLUMNS) for f in files]
    return [pa.concat_tables(tables, promote_options="permissive")]


def new_stop_flag() -> str:
    return f"crowdselect-stop:{uuid.uuid4().hex}"


def set_stop(stop: str) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(stop.encode(), b"1", overwrite=True)


def clear_stop(stop: str) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(stop.encode())


def is_stopped(stop: str) -> bool:
    from ray.experimental import internal_kv

    return internal_kv._internal_kv_get(stop.encode()) is not None
