"""Semantic dedup end to end: near-duplicate instructions in a pool of real ones are dropped inside their k-means
cluster, the higher-scored row of each pair kept, on Ray Data and in this process alike (blocks of 5 lines);
duplicates.jsonl names every pair; no dropped row is selected; off by default."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from crowdselect.core.config import build
from crowdselect.select.config import SelectConfig
from crowdselect.select.job import run_select

ROOT = Path(__file__).resolve().parents[2]
CROWD = (("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2))


def write_pool(path: Path) -> dict[str, str]:
    """30 real instructions, then copies of 6 of them (exact, re-cased, one word added) under new ids with other
    rewards. Returns copy id -> original id."""
    texts = [json.loads(x)["conversations"][0]["value"]
             for x in (ROOT / "examples/crowd.pool.jsonl").read_text().splitlines()[:30]]
    rows = [(f"r{i:02d}", t) for i, t in enumerate(texts)]
    copies = {}
    for j, i in enumerate((1, 3, 9, 12, 20, 27)):
        text = (texts[i], texts[i].upper(), texts[i] + " Please.")[j % 3]
        copies[f"c{j}"] = f"r{i:02d}"
        rows.append((f"c{j}", text))
    with path.open("w") as f:
        for n, (rid, text) in enumerate(rows):
            rewards = [0.3 * (n % 5), 1.0 + 0.2 * (n % 7), 0.5 + 0.1 * (n % 3)]
            f.write(json.dumps({"id": rid, "instruction": text, "responses": [
                {"model": g, "response": f"[{g}] {rid}", "reward": w} for (g, _, _), w in zip(CROWD, rewards, strict=True)]})
                + "\n")
    return copies


def config(pool: Path, out: Path, executor: str, dedup: bool) -> SelectConfig:
    return build(SelectConfig, {
        "generators": [{"name": n, "family": f, "size_b": s} for n, f, s in CROWD],
        "input": {"path": [str(pool)], "lines_per_block": 5},
        "selection": {"k": 9, "clusters": 3, "dedup": {"enabled": dedup, "cosine": 0.9, "chunk": 4}},
        "executor": executor, "out": str(out)}, file="test")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_near_duplicates_leave_the_pool_inside_their_cluster_on_both_executors(ray_local, tmp_path):
    pool = tmp_path / "pool.jsonl"
    copies = write_pool(pool)
    for executor in ("ray", "local"):
        assert run_select(config(pool, tmp_path / executor, executor, dedup=True)) == 0
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    assert (ray_out / "selected.jsonl").read_bytes() == (local_out / "selected.jsonl").read_bytes()
    pairs = read_jsonl(local_out / "duplicates.jsonl")
    ray_pairs = read_jsonl(ray_out / "duplicates.jsonl")
    assert [(p["kept_id"], p["dropped_id"], p["cluster"]) for p in ray_pairs] == \
           [(p["kept_id"], p["dropped_id"], p["cluster"]) for p in pairs]

    scores = pq.read_table(local_out / "scores.parquet").to_pylist()
    by_id = {r["id"]: r for r in scores}
    assert {frozenset((p["kept_id"], p["dropped_id"])) for p in pairs} >= \
           {frozenset(pair) for pair in copies.items() if by_id[pair[0]]["cluster"] == by_id[pair[1]]["cluster"]}
    dropped = {p["dropped_id"] for p in pairs}
    for p in pairs:  # same cluster, the kept row ranks first, the kept row stays, cosine over the threshold
        kept, gone = by_id[p["kept_id"]], by_id[p["dropped_id"]]
        assert kept["cluster"] == gone["cluster"] == p["cluster"] and p["cosine"] >= 0.9
        assert (-kept["score"], kept["id"]) < (-gone["score"], gone["id"])
        assert p["kept_id"] not in dropped and gone["duplicate_of"] == p["kept_id"]
    assert sum(r["duplicate_of"] is not None for r in scores) == len(pairs)
    selected = [r["id"] for r in read_jsonl(local_out / "selected.jsonl")]
    assert len(selected) == 9 and not set(selected) & dropped
    run = json.loads((local_out / "run.json").read_text())
    assert run["dedup"]["dropped"] == len(pairs) and sum(run["dedup"]["per_cluster"].values()) == len(pairs)
    assert "<h2>Semantic dedup</h2>" in (local_out / "report.html").read_text()

    assert run_select(config(pool, tmp_path / "off", "local", dedup=False)) == 0  # off: nothing dropped, no file
    assert not (tmp_path / "off" / "duplicates.jsonl").exists()
    assert "duplicate_of" not in pq.read_table(tmp_path / "off" / "scores.parquet").column_names
