"""Run directory mechanics: manifests, resume, refusing to mix settings, per-shard gathering of Ray rows."""

import json

import pyarrow as pa
import pytest

from crowdselect.core import columns as C
from crowdselect.core.errors import StageError, UserError
from crowdselect.pipeline.collect import Expected, collect
from crowdselect.pipeline.store import StageStore


def test_shards_resume_and_settings_are_guarded(tmp_path):
    uri = str(tmp_path / "generate" / "g")
    store = StageStore.open(uri, {"model": "m", "max_tokens": 8}, redo_on_change=False)
    store.write_shard("shard-00000", pa.table({C.ID: ["a", "b"], C.ERROR: [None, "boom"]}), errors=1)
    again = StageStore.open(uri, {"model": "m", "max_tokens": 8}, redo_on_change=False)
    assert again.is_done("shard-00000") and not again.is_done("shard-00001") and not again.complete
    assert again.read_shard("shard-00000").column(C.ID).to_pylist() == ["a", "b"]
    assert again.counts() == {"shards": 1, "rows": 2, "errors": 1}
    with pytest.raises(UserError, match=r"made with other settings \(max_tokens\)"):
        StageStore.open(uri, {"model": "m", "max_tokens": 16}, redo_on_change=False)
    fresh = StageStore.open(uri, {"model": "m", "max_tokens": 16}, redo_on_change=True)
    assert not fresh.shards and not (tmp_path / "generate" / "g" / "shard-00000.parquet").exists()


def test_version_changes_when_a_shard_is_written(tmp_path):
    store = StageStore.open(str(tmp_path / "s"), {"x": 1}, redo_on_change=False)
    before = store.version
    store.write_shard("shard-00000", pa.table({C.ID: ["a"]}))
    assert store.version != before
    store.mark_complete(rows=1)
    manifest = json.loads((tmp_path / "s" / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["shards"] == {"shard-00000": {"rows": 1, "errors": 0}}
    assert StageStore.open(str(tmp_path / "s"), {"x": 1}, redo_on_change=False).version == store.version


def rows(shard, ids):
    return [{C.ID: i, C.SHARD: shard, C.RESPONSE: f"r-{i}"} for i in ids]


WRITERS = pytest.mark.parametrize("workers", [True, False], ids=["workers-write", "driver-writes"])


def gather(ds, expected, store, workers, **kw):
    collect(ds, Expected.of(expected), (C.ID,), store, kw.pop("finalize", lambda t: t), workers=workers,
            stall_s=kw.pop("stall_s", None), progress=False, desc="test")


@WRITERS
def test_collect_writes_each_shard_once_deduplicated_in_pool_order(tmp_path, ray_local, workers):
    data = rows("s0", ["b", "a"]) + rows("s1", ["c"]) + rows("s0", ["a"]) + rows("s1", ["d", "c"])
    ds = ray_local.data.from_items(data, override_num_blocks=3)
    store = StageStore.open(str(tmp_path / "st"), {}, redo_on_change=False)
    expected = {"s0": [("a",), ("b",)], "s1": [("c",), ("d",)]}
    tag = lambda t: t.append_column("tag", pa.array(["t"] * t.num_rows))  # noqa: E731 (runs where rows are written)
    gather(ds, expected, store, workers, finalize=tag)
    assert store.read_shard("s0").column(C.ID).to_pylist() == ["a", "b"]
    assert store.read_shard("s1").column(C.RESPONSE).to_pylist() == ["r-c", "r-d"]
    assert store.read_shard("s1").column("tag").to_pylist() == ["t", "t"]
    assert store.counts() == {"shards": 2, "rows": 4, "errors": 0}
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == ["_manifest.json", "s0.parquet", "s1.parquet"]


def test_both_writers_write_the_same_bytes_over_many_blocks(tmp_path, ray_local):
    ids = [f"r{i:04d}" for i in range(2000)]
    data = [{C.ID: i, C.SHARD: f"s{n % 7}", C.RESPONSE: f"answer {i}"} for n, i in enumerate(ids)]
    expected = {f"s{k}": [(i,) for n, i in enumerate(ids) if n % 7 == k] for k in range(7)}
    for workers in (True, False):
        store = StageStore.open(str(tmp_path / str(workers)), {}, redo_on_change=False)
        gather(ray_local.data.from_items(data, override_num_blocks=23), expected, store, workers)
    for k in range(7):
        assert (tmp_path / "True" / f"s{k}.parquet").read_bytes() == (tmp_path / "False" / f"s{k}.parquet").read_bytes()


@WRITERS
def test_collect_raises_on_missing_rows_but_keeps_finished_shards(tmp_path, ray_local, workers):
    ds = ray_local.data.from_items(rows("s0", ["a"]) + rows("s1", ["c"]))
    store = StageStore.open(str(tmp_path / "st"), {}, redo_on_change=False)
    with pytest.raises(StageError, match=r"1 row\(s\) never came back, e.g. shard s1 key \('d',\); 1 of 2 "
                                         r"shard\(s\) written in .*, left: s1; rerun the same command"):
        gather(ds, {"s0": [("a",)], "s1": [("c",), ("d",)]}, store, workers)
    assert store.is_done("s0") and not store.is_done("s1")


def test_a_stalled_stage_fails_naming_the_shards_left(tmp_path, ray_local):
    import time

    def slow(batch):
        if "b" in batch[C.ID]:
            time.sleep(30)  # an engine hung on an out-of-memory: no row for longer than the stall timeout
        return batch

    ds = ray_local.data.from_items(rows("s0", ["a"]) + rows("s1", ["b"]), override_num_blocks=2).map_batches(slow, batch_size=1)
    store = StageStore.open(str(tmp_path / "st"), {}, redo_on_change=False)
    start = time.time()
    with pytest.raises(StageError, match=r"test: no row came back for 3 s .*stopped; [01] of 2 shard\(s\) written "
                                         r"in .*, left: (s0, )?s1; rerun"):
        gather(ds, {"s0": [("a",)], "s1": [("b",)]}, store, True, stall_s=3)
    assert time.time() - start < 25 and not store.is_done("s1")


def test_a_failing_task_ends_the_stage_with_its_cause_and_the_shards_left(tmp_path, ray_local):
    def broken(batch):
        if "b" in batch[C.ID]:
            raise MemoryError("CUDA out of memory (rehearsed)")
        return batch

    ds = ray_local.data.from_items(rows("s0", ["a"]) + rows("s1", ["b"]), override_num_blocks=2).map_batches(broken, batch_size=1)
    store = StageStore.open(str(tmp_path / "st"), {}, redo_on_change=False)
    with pytest.raises(StageError, match=r"test failed: MemoryError: CUDA out of memory \(rehearsed\); [01] of 2 "
                                         r".*left: (s0, )?s1; rerun"):
        gather(ds, {"s0": [("a",)], "s1": [("b",)]}, store, True)


def test_the_reward_input_waits_for_every_generator_and_stops_when_told(tmp_path, ray_local):
    """`answers_source`: a shard is read once all its generator files exist (written later here, as running
    generators do); a set stop flag ends a read still waiting."""
    import threading
    import time

    import pyarrow.parquet as pq

    from crowdselect.pipeline.answers_source import answers, clear_stop, new_stop_flag, set_stop

    def shard_file(gen, shard, ids):
        t = pa.table({C.ID: ids, C.INSTRUCTION: ["q"] * len(ids), C.SHARD: [shard] * len(ids),
                      C.MODEL: [gen] * len(ids), C.RESPONSE: [f"{gen}-{i}" for i in ids], C.ERROR: [None] * len(ids)})
        pq.write_table(t, tmp_path / f"{gen}-{shard}.parquet")

    files = {s: [str(tmp_path / f"{g}-{s}.parquet") for g in ("g1", "g2")] for s in ("s0", "s1")}
    for g in ("g1", "g2"):
        shard_file(g, "s0", ["a", "b"])
    shard_file("g1", "s1", ["c"])
    late = threading.Timer(3.0, shard_file, args=("g2", "s1", ["c"]))  # the slower generator's last shard
    late.start()
    stop = new_stop_flag()
    start = time.time()
    rows = answers(["s0", "s1"], files, stop).take_all()
    assert time.time() - start >= 2.5 and sorted((r[C.SHARD], r[C.RESPONSE]) for r in rows) == [
        ("s0", "g1-a"), ("s0", "g1-b"), ("s0", "g2-a"), ("s0", "g2-b"), ("s1", "g1-c"), ("s1", "g2-c")]
    never = {"s9": [str(tmp_path / "never.parquet")]}
    threading.Timer(2.0, set_stop, args=(stop,)).start()
    with pytest.raises(Exception, match="a generator stage failed: its shards will not come"):
        answers(["s9"], never, stop).take_all()
    clear_stop(stop)
