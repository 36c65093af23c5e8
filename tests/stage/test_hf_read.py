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

from crowdselect.core import storage
from crowdselect.crowd import synthetic
from crowdselect.crowd.config import InputConfig
from crowdselect.crowd.read import accepted, read_crowd, rejected
from crowdselect.generate.spec import GeneratorSpec
from crowdselect.pool.read import read_pool

CROWD = [("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2)]
REPO = "hf://datasets/org/crowd@main"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local folder served as the Hub: `hf://datasets/...` paths resolve under tmp_path/hub."""
    root = tmp_path / "hub"
    root.mkdir()
    fs = DirFileSystem(path=str(root), fs=LocalFileSystem())
    monkeypatch.setattr(storage, "_hub_filesystem", lambda: storage.pafs.PyFileSystem(storage._HubHandler(fs)))
    storage._remote_filesystem.cache_clear()
    yield root
    storage._remote_filesystem.cache_clear()


def rows(n, start):
    got = synthetic.canonical_rows([f"Question {start + i}: {'how ' * (i + 2)}?" for i in range(n)], CROWD, seed=start)
    return [{**r, "id": f"q{start + i}"} for i, r in enumerate(got)]


def crowd_repo(root):
    data = root / "datasets" / "org" / "crowd@main" / "data"
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
    ids = crowd_repo(hub)
    gens = [GeneratorSpec(*g) for g in CROWD]
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
