"""Run directories, Parquet and checkpoints on s3:// against a real S3-API server on localhost (moto's server).

The server is a separate HTTP endpoint on 127.0.0.1; pyarrow's S3 client talks to it exactly as to AWS
(signed requests, multipart uploads, listings), reached through AWS_ENDPOINT_URL as a user's MinIO would be.
"""

from __future__ import annotations

import gzip
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdselect.core import storage
from crowdselect.runtime.ray_setup import read_parquet

BUCKET = "crowdselect-test"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 and the env a user would set for an S3-compatible endpoint."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "AWS_EC2_METADATA_DISABLED": "true"}  # never ask an instance-metadata service for credentials
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=BUCKET)
    try:
        yield {"env": env, "client": boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def object_keys(s3, prefix: str) -> list[str]:
    """The files really on the server, listed with boto3 (not through the code under test); pyarrow's empty
    directory-marker objects ("a/b/") are left out."""
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))


def test_files_round_trip_through_the_s3_server(s3):
    run = f"s3://{BUCKET}/runs/a"
    assert storage.is_remote(run) and storage.scheme(run) == "s3"
    assert not storage.exists(run)
    storage.write_text(storage.join(run, "run.json"), json.dumps({"k": 24}))
    storage.write_bytes(storage.join(run, "generate", "shard-00000.bin"), b"\x00" * 3_000_000)
    assert object_keys(s3, "runs/a/") == ["runs/a/generate/shard-00000.bin", "runs/a/run.json"]
    assert json.loads(storage.read_text(storage.join(run, "run.json"))) == {"k": 24}
    assert storage.is_file(storage.join(run, "run.json")) and storage.exists(run)
    assert storage.list_files(run) == [f"{run}/generate/shard-00000.bin", f"{run}/run.json"]
    assert storage.list_files(run, suffix=".json", recursive=False) == [f"{run}/run.json"]
    assert len(storage.read_bytes(storage.join(run, "generate", "shard-00000.bin"))) == 3_000_000
    storage.delete_file(storage.join(run, "run.json"))
    storage.delete_dir(run)
    assert object_keys(s3, "runs/a/") == [] and not storage.exists(run)
    storage.delete_dir(run)  # deleting what is gone is not an error


def test_run_store_resumes_from_an_s3_run_dir(s3):
    """The run directory code of `crowdselect run` (manifest + shards) on s3://: a reopen sees done shards."""
    run_store = pytest.importorskip("crowdselect.pipeline.store")
    stage = f"s3://{BUCKET}/runs/resume/generate"
    settings = {"model": "pkg:smollm2-135m-instruct", "max_tokens": 8}
    store = run_store.StageStore.open(stage, settings, redo_on_change=False)
    table = pa.table({"id": ["a", "b"], "response": ["x", "y"]})
    store.write_shard(run_store.shard_name(0), table)
    again = run_store.StageStore.open(stage, settings, redo_on_change=False)
    assert again.is_done(run_store.shard_name(0)) and not again.is_done(run_store.shard_name(1))
    assert again.read_shard(run_store.shard_name(0)).equals(table)
    assert object_keys(s3, "runs/resume/") == ["runs/resume/generate/_manifest.json",
                                               "runs/resume/generate/shard-00000.parquet"]


def test_ray_data_writes_and_reads_parquet_on_s3(s3, ray_local):
    """Ray Data tasks on Ray workers write and read s3:// Parquet; the filesystem travels with the tasks."""
    import ray

    uri = f"s3://{BUCKET}/runs/ray/scores"
    path, fs = storage.ray_path(uri)
    assert fs is not None and path == f"{BUCKET}/runs/ray/scores"
    # Workers get the endpoint and credentials the way a job gets them: from its runtime env.
    remote = {"runtime_env": {"env_vars": s3["env"]}}
    rows = [{"id": f"i{i:03d}", "score": i / 10} for i in range(300)]
    # concurrency=1: one worker process with that env does all blocks (fast on a 2-core CI machine)
    ray.data.from_items(rows, override_num_blocks=3).write_parquet(path, filesystem=fs, ray_remote_args=remote,
                                                                   concurrency=1)
    written = storage.list_files(uri, suffix=".parquet")
    assert len(written) == 3 and all(w.startswith(uri + "/") for w in written)
    back = read_parquet([path], filesystem=fs, runtime_env=remote["runtime_env"], concurrency=1).to_pandas()
    assert sorted(back["id"]) == [r["id"] for r in rows]
    assert back.set_index("id")["score"].to_dict() == {r["id"]: r["score"] for r in rows}
    # and one file through plain pyarrow, the way run.json / selected files are read back
    table = pq.read_table(io.BytesIO(storage.read_bytes(written[0])))
    assert table.num_rows == 100


def test_pool_and_train_data_read_from_an_s3_folder(s3):
    """One records reader for every input: an s3:// folder (nested, with a non-data file) for the pool and
    for training data, and an s3:// glob; sources keep the URI."""
    from crowdselect.core.records import list_data_files
    from crowdselect.pool.read import read_pool
    from crowdselect.train.data import read_conversations

    row = {"instruction": "from s3", "output": "yes"}
    storage.write_text(f"s3://{BUCKET}/data/part/a.jsonl", json.dumps(row) + "\n")
    storage.write_bytes(f"s3://{BUCKET}/data/b.jsonl.gz", gzip.compress((json.dumps(row) + "\n").encode()))
    storage.write_text(f"s3://{BUCKET}/data/NOTES.md", "not data")
    pool = read_pool([f"s3://{BUCKET}/data"])
    assert not pool.rejects, pool.rejects
    assert [r["source"] for r in pool.rows] == [f"s3://{BUCKET}/data/b.jsonl.gz:1", f"s3://{BUCKET}/data/part/a.jsonl:1"]
    assert pool.skipped == f"skipped 1 non-data file(s) in s3://{BUCKET}/data: NOTES.md"
    convs, bad = read_conversations([f"s3://{BUCKET}/data"])
    assert len(convs) == 2 and not bad
    assert list_data_files([f"s3://{BUCKET}/data/*.gz"]).files == [f"s3://{BUCKET}/data/b.jsonl.gz"]


def test_explicit_endpoint_setting(s3, monkeypatch):
    """CROWDSELECT_S3_ENDPOINT points crowdselect alone at the server, without AWS_ENDPOINT_URL."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("CROWDSELECT_S3_ENDPOINT", s3["env"]["AWS_ENDPOINT_URL"])
    storage.write_text(f"s3://{BUCKET}/explicit/ok.txt", "ok")
    assert object_keys(s3, "explicit/") == ["explicit/ok.txt"]
    fs, _ = storage.filesystem(f"s3://{BUCKET}/explicit")
    assert fs.__reduce__()[1][0]["endpoint_override"].endswith(s3["env"]["AWS_ENDPOINT_URL"].split("//")[1])


def test_local_paths_still_work(tmp_path):
    run = str(tmp_path / "run")
    storage.write_text(storage.join(run, "a", "x.json"), "{}")
    assert storage.list_files(run) == [os.path.join(run, "a", "x.json")]
    assert storage.ray_path(run) == (run, None)
    assert not [p for p in os.listdir(os.path.join(run, "a")) if ".tmp" in p], "no temp files left behind"
    storage.delete_dir(run)
    assert not os.path.exists(run)


def test_a_run_into_s3_has_its_workers_write_the_shards(s3, tmp_path):
    """`crowdselect run --out s3://...` (dry models): the Ray workers write the generate and reward shards
    straight to the bucket (`shard_writer: auto`), merged from part files that are gone at the end."""
    import subprocess
    import sys

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"q{i:02d}", "instruction": f"Question {i}"}) + "\n" for i in range(12)))
    config = tmp_path / "run.yaml"
    config.write_text(f"""
pool: {{path: {pool}, shard_size: 5}}
generators:
  - {{name: g1, family: f, size_b: 1, backend: dry, max_tokens: 6}}
  - {{name: g2, family: f, size_b: 2, backend: dry, max_tokens: 9}}
rewards: [{{name: rm, kind: judge, backend: dry}}]
selection: {{k: 4, cluster: false}}
ray: {{num_cpus: 4}}
progress: false
""")
    out = f"s3://{BUCKET}/runs/workers"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray, which gets the S3 env
    done = subprocess.run([sys.executable, "-m", "crowdselect.cli", "run", str(config), "--out", out], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(storage.read_text(f"{out}/run.json"))
    assert run["shard_writer"] == "workers" and run["crowd"]["instructions"] == 12
    keys = object_keys(s3, "runs/workers/")
    for stage in ("generate/g1", "generate/g2", "reward/rm"):
        assert [k for k in keys if k.startswith(f"runs/workers/{stage}/shard-")] == [
            f"runs/workers/{stage}/shard-{i:05d}.parquet" for i in range(3)]
    assert not [k for k in keys if "/_parts/" in k]
    scored = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/reward/rm/shard-00002.parquet")))
    assert scored.column("id").to_pylist() == ["q10", "q10", "q11", "q11"]  # pool order, then generator order
