"""Run directory mechanics: manifests, resume, refusing to mix settings, per-shard gathering of Ray rows."""

import json

import pyarrow as pa
import pytest

from crowdselect.core import columns as C
from crowdselect.core.errors import UserError
from crowdselect.pipeline.stages import collect
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


def test_collect_writes_each_shard_once_deduplicated_in_pool_order(tmp_path, ray_local):
    data = rows("s0", ["b", "a"]) + rows("s1", ["c"]) + rows("s0", ["a"]) + rows("s1", ["d", "c"])
    ds = ray_local.data.from_items(data, override_num_blocks=3)
    store = StageStore.open(str(tmp_path / "st"), {}, redo_on_change=False)
    expected = {"s0": [("a",), ("b",)], "s1": [("c",), ("d",)]}
    collect(ds, expected, (C.ID,), store, lambda t: t, progress=False, desc="test")
    assert store.read_shard("s0").column(C.ID).to_pylist() == ["a", "b"]
    assert store.read_shard("s1").column(C.RESPONSE).to_pylist() == ["r-c", "r-d"]


def test_collect_raises_on_missing_rows_but_keeps_finished_shards(tmp_path, ray_local):
    ds = ray_local.data.from_items(rows("s0", ["a"]) + rows("s1", ["c"]))
    store = StageStore.open(str(tmp_path / "st"), {}, redo_on_change=False)
    with pytest.raises(RuntimeError, match=r"1 row\(s\) never came back, e.g. shard s1 key \('d',\)"):
        collect(ds, {"s0": [("a",)], "s1": [("c",), ("d",)]}, (C.ID,), store, lambda t: t,
                progress=False, desc="test")
    assert store.is_done("s0") and not store.is_done("s1")
