"""hf:// inputs read through the same machinery as on the Hub, without a network: pyarrow's PyFileSystem over
an fsspec filesystem (storage's `_HubHandler`), Ray Data handed that filesystem, rows named by their hf:// URI.

The Hub's own client (huggingface_hub's HfFileSystem) is the one part swapped out: here the fsspec filesystem
serves a local folder laid out as `datasets/ORG/NAME@REV/...`, the paths HfFileSystem answers with. The
offline error of the real HfFileSystem is tested in tests/unit/test_hf_paths.py.
"""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from bench import synthetic
from crowdselect.core import storage
from crowdselect.core.errors import UserError
from crowdselect.crowd.config import InputConfig
from crowdselect.crowd.read import accepted, read_crowd, rejected
from crowdselect.pool.read import read_pool

CROWD = [("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2)]
REPO = "hf://datasets/org/crowd@main"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local folder served as the Hub: `hf://datasets/...` paths resolve under tmp_path/hub."""
    root = tmp_path / "hub"
    root.mkdir()
    fs = DirFileSystem(path=str(root), fs=LocalFileSystem())
    monkeypatch.setattr(storage, "_hub_filesystem", lambda endpoint: storage.pafs.PyFileSystem(storage._HubHandler(fs)))
    storage._remote_filesystem.cache_clear()
    yield root
    storage._remote_filesystem.cache_clear()


def rows(n, start):
    got = synthetic.canonical_rows([f"Question {start + i}: {'how ' * (i + 2)}?" for i in range(n)], CROWD, seed=start)
    return [{**r, "id": f"q{start + i}"} for i, r in enumerate(got)]


def crowd_repo(data):
    """Crowd files in folder `data`: a.jsonl (a bad line 4), b.jsonl.gz, more/c.parquet, README.md."""
    (data / "more").mkdir(parents=True)
    a, b, c = rows(5, 0), rows(4, 10), rows(6, 20)
    (data / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in a[:3]) + "{bad\n"
                                  + "".join(json.dumps(r) + "\n" for r in a[3:]))
    (data / "b.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in b).encode()))
    pq.write_table(pa.Table.from_pylist(c), data / "more" / "c.parquet", row_group_size=2)
    (data / "README.md").write_text("a dataset card")
    return [r["id"] for r in (*a, *b, *c)]


@pytest.mark.parametrize("local", [False, True], ids=["ray", "local"])
def test_a_crowd_folder_on_the_hub_reads_on_both_executors(ray_local, hub, local):
    ids = crowd_repo(hub / "datasets" / "org" / "crowd@main" / "data")  # the paths HfFileSystem answers with
    gens = [g[0] for g in CROWD]
    ing = read_crowd(InputConfig(path=[f"{REPO}/data"], lines_per_block=2), gens, local=local)
    assert ing.format == "canonical"
    assert ing.files == [f"{REPO}/data/a.jsonl", f"{REPO}/data/b.jsonl.gz", f"{REPO}/data/more/c.parquet"]
    got = accepted(ing.rows).take_all()
    assert sorted(r["id"] for r in got) == sorted(ids)  # the Parquet and JSON parts are unioned by kind
    assert {r["id"]: r["source"] for r in got}["q3"] == f"{REPO}/data/a.jsonl:5"
    assert {r["id"]: r["source"] for r in got}["q21"] == f"{REPO}/data/more/c.parquet:2"
    assert [(r["source"], r["error"][:12]) for r in rejected(ing.rows).take_all()] == [
        (f"{REPO}/data/a.jsonl:4", "invalid JSON")]


def test_a_pool_glob_on_the_hub_is_read_with_hf_sources(hub):
    pool = hub / "datasets" / "org" / "crowd@main" / "pool"
    pool.mkdir(parents=True)
    (pool / "x.jsonl").write_text('{"instruction": "one"}\n\n{"instruction": "two"}\n')
    (pool / "y.json").write_text(json.dumps([{"instruction": "three"}]))
    (pool / "notes.txt").write_text("not matched by the glob\n")
    got = read_pool([f"{REPO}/pool/*.json*"])
    assert [(r["instruction"], r["source"]) for r in got.rows] == [
        ("one", f"{REPO}/pool/x.jsonl:1"), ("two", f"{REPO}/pool/x.jsonl:3"), ("three", f"{REPO}/pool/y.json:1")]


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """huggingface_hub's real HfFileSystem against a Hub on localhost (tests/stage/hub_server.py) serving
    tmp_path/hub as ORG/NAME repositories. Offline mode is lifted for this process only: Ray workers get
    HF_ENDPOINT and HF_HUB_OFFLINE=0 from the read tasks' runtime env."""
    import huggingface_hub.constants
    from hub_server import serve_hub

    root = tmp_path / "hub"
    root.mkdir()
    with serve_hub(root) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        storage._remote_filesystem.cache_clear()
        yield root, endpoint
    storage._remote_filesystem.cache_clear()


def test_the_real_hf_filesystem_lists_and_reads_through_both_readers(ray_local, local_hub):
    import ray

    from crowdselect.core.paths import check_inputs
    from crowdselect.core.records import FILE, LINE, list_data_files
    from crowdselect.crowd.ray_sources import JsonLinesSource, ParquetRowsSource

    root, endpoint = local_hub
    ids = crowd_repo(root / "org" / "crowd" / "data")  # the Hub's repositories: ORG/NAME under its root
    check_inputs([f"{REPO}/data", "hf://datasets/org/crowd/data/*.jsonl"])
    listing = list_data_files([f"{REPO}/data"], what="crowd")
    assert listing.files == [f"{REPO}/data/a.jsonl", f"{REPO}/data/b.jsonl.gz", f"{REPO}/data/more/c.parquet"]
    assert listing.skipped == {f"{REPO}/data": ["README.md"]}
    gens = [g[0] for g in CROWD]
    ing = read_crowd(InputConfig(path=[f"{REPO}/data"], lines_per_block=2), gens, local=True)
    assert sorted(r["id"] for r in accepted(ing.rows).take_all()) == sorted(ids)
    env = {"runtime_env": {"env_vars": {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0"}}}
    lines = ray.data.read_datasource(JsonLinesSource(listing.files[:2], lines_per_block=2), ray_remote_args=env)
    table = ray.data.read_datasource(ParquetRowsSource(listing.files[2:], lines_per_block=2), ray_remote_args=env)
    got = sorted((r[FILE], r[LINE]) for r in [*lines.take_all(), *table.take_all()])
    assert got == sorted([(f"{REPO}/data/a.jsonl", n) for n in range(1, 7)]
                         + [(f"{REPO}/data/b.jsonl.gz", n) for n in range(1, 5)]
                         + [(f"{REPO}/data/more/c.parquet", n) for n in range(1, 7)])
    with pytest.raises(UserError, match=r"^--input hf://datasets/org/nope/x.jsonl: no such file or directory"):
        check_inputs(["hf://datasets/org/nope/x.jsonl"])
