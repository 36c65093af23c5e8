"""Decontamination end to end: MT-bench questions planted in a pool of real instructions (verbatim copies and
paraphrases) are flagged with their evidence and never selected, on Ray Data and in this process alike, split
into blocks; the real instructions all pass; a rerun writes the same bytes; a pool of eval questions only stops
with the matches written; `experiment` decontaminates against its own eval questions without being asked."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crowdselect.core.config import build
from crowdselect.select.config import SelectConfig
from crowdselect.select.job import run_select

ROOT = Path(__file__).resolve().parents[2]
CROWD = (("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2))
PLANTED = {  # fixture row (question_id, label, how) -> the rule expected to fire first
    (81, "verbatim", "exact copy"): "exact",
    (84, "verbatim", "wrapped in a request"): "ngram",
    (82, "verbatim", "lower case, no punctuation"): "exact",
    (121, "verbatim", "exact copy of a short second turn"): "exact",
    (104, "paraphrase", "reworded by hand"): "embedding",
    (119, "paraphrase", "reworded by hand"): "embedding",
    (144, "paraphrase", "reworded by hand"): "embedding",
    (153, "paraphrase", "reworded by hand"): "embedding",
}


def planted_rows() -> list[dict]:
    fixture = [json.loads(x) for x in (ROOT / "tests/fixtures/contamination_labelled.jsonl").read_text().splitlines()]
    out = []
    for (qid, label, how), rule in PLANTED.items():
        row = next(r for r in fixture if (r["question_id"], r["label"], r.get("how")) == (qid, label, how))
        out.append({**row, "rule": rule})
    return out


def ordinary_instructions(n: int = 40) -> list[str]:
    rows = [json.loads(x) for x in (ROOT / "examples/crowd.pool.jsonl").read_text().splitlines()[:n]]
    return [r["conversations"][0]["value"] for r in rows]


def write_pool(path: Path) -> tuple[list[str], list[str]]:
    """Canonical crowd: 40 real instructions with ordinary rewards, 8 planted ones with rewards that put them
    on top of every ranking (hard, separable, stable). Returns (planted ids, ordinary ids)."""
    rows, planted, ordinary = [], [], []
    for i, text in enumerate(ordinary_instructions()):
        r = [0.5 + 0.1 * (i % 7), 1.0 + 0.05 * (i % 5), 0.8 + 0.07 * (i % 3)]
        rows.append((f"real-{i:02d}", text, r))
        ordinary.append(f"real-{i:02d}")
    for j, p in enumerate(planted_rows()):
        rows.insert(3 + 5 * j, (f"plant-{j}", p["text"], [-3.0, 5.0, -3.0]))
        planted.append(f"plant-{j}")
    with path.open("w") as f:
        for rid, text, rewards in rows:
            f.write(json.dumps({"id": rid, "instruction": text, "responses": [
                {"model": g, "response": f"[{g}] answer to {rid}", "reward": w}
                for (g, _, _), w in zip(CROWD, rewards, strict=True)]}) + "\n")
    return planted, ordinary


def config(pool: Path, out: Path, executor: str, against: list[str]) -> SelectConfig:
    return build(SelectConfig, {
        "generators": [{"name": n, "family": f, "size_b": s} for n, f, s in CROWD],
        "input": {"path": [str(pool)], "lines_per_block": 7},
        "selection": {"k": 8, "clusters": 2}, "decontaminate": {"against": against},
        "executor": executor, "out": str(out)}, file="test")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_planted_mt_bench_questions_are_flagged_and_never_selected(ray_local, tmp_path):
    pool = tmp_path / "pool.jsonl"
    planted, ordinary = write_pool(pool)
    for executor in ("ray", "local"):
        assert run_select(config(pool, tmp_path / executor, executor, ["mt-bench"])) == 0
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    assert (ray_out / "selected.jsonl").read_bytes() == (local_out / "selected.jsonl").read_bytes()

    flagged = read_jsonl(local_out / "contamination.jsonl")
    assert [f["id"] for f in flagged] == sorted(planted)
    by_id = {f"plant-{j}": p for j, p in enumerate(planted_rows())}
    for f in flagged:  # the evidence names the planted question, the rule, the n-gram or the cosine
        want = by_id[f["id"]]
        assert (f["eval"]["set"], f["eval"]["question_id"], f["eval"]["turn"]) == \
               ("mt-bench", want["question_id"], want["turn"])
        assert f["rule"] == want["rule"] and f["instruction"] == want["text"]
        if f["rule"] in ("exact", "ngram") and len(want["text"].split()) >= 8:
            assert f["ngram"] and f["ngram"] in " ".join(want["text"].lower().split()).replace(",", "").replace(".", "")
        if f["rule"] == "embedding":
            assert f["cosine"] >= 0.75 and "embedding" in f["rules"]
    ray_flagged = read_jsonl(ray_out / "contamination.jsonl")
    assert [(f["id"], f["rule"], f["eval"], f["ngram"]) for f in ray_flagged] == \
           [(f["id"], f["rule"], f["eval"], f["ngram"]) for f in flagged]
    assert all(abs((a["cosine"] or 0) - (b["cosine"] or 0)) < 1e-3 for a, b in zip(ray_flagged, flagged, strict=True))

    selected = {r["id"] for r in read_jsonl(local_out / "selected.jsonl")}
    scored = set(pq.read_table(local_out / "scores.parquet").column("id").to_pylist())
    assert not selected & set(planted) and scored == set(ordinary)  # the real instructions all pass
    run = json.loads((local_out / "run.json").read_text())
    c = run["counts"]
    assert c["input_rows"] == c["accepted_rows"] + c["rejected_rows"] + c["decontaminated_rows"] == 48
    assert (c["decontaminated_rows"], c["decontaminated_instructions"], c["accepted_instructions"]) == (8, 8, 40)
    assert run["decontamination"]["removed"]["by_rule"] == {"exact": 3, "ngram": 1, "embedding": 4}
    assert run["decontamination"]["sets"] == [{"set": "mt-bench", "questions": 80, "texts": 160}]
    summary = (local_out / "summary.txt").read_text()
    assert "= accepted 40 + rejected 0 + decontaminated 8" in " ".join(summary.split())
    page = (local_out / "report.html").read_text()
    assert "<h2>Decontamination</h2>" in page and "plant-0" in page

    first = {name: (local_out / name).read_bytes() for name in ("selected.jsonl", "contamination.jsonl")}
    assert run_select(config(pool, local_out, "local", ["mt-bench"])) == 0  # a rerun: the same bytes
    assert {name: (local_out / name).read_bytes() for name in first} == first


def test_without_decontamination_the_planted_rows_would_be_chosen(tmp_path):
    """The control: the planted rows top every ranking, so the test above shows the removal, not luck."""
    pool = tmp_path / "pool.jsonl"
    planted, _ = write_pool(pool)
    assert run_select(config(pool, tmp_path / "o", "local", [])) == 0
    selected = {r["id"] for r in read_jsonl(tmp_path / "o" / "selected.jsonl")}
    assert len(selected & set(planted)) >= 4
    assert not (tmp_path / "o" / "contamination.jsonl").exists()
    assert json.loads((tmp_path / "o" / "run.json").read_text())["decontamination"] is None


def test_a_bad_question_file_fails_before_any_work(tmp_path):
    from crowdselect.cli import main

    pool = tmp_path / "pool.jsonl"
    write_pool(pool)
    (tmp_path / "q.jsonl").write_text('{"question_id": 1, "turns": ["a"]}\n{"question_id": 1, "turns": ["b"]}\n')
    (tmp_path / "c.yaml").write_text("generators:\n" + "".join(f"  - {{name: {n}, family: {f}, size_b: {s}}}\n"
                                                              for n, f, s in CROWD))
    args = ["select", "--config", str(tmp_path / "c.yaml"), "--input", str(pool), "--out", str(tmp_path / "o")]
    assert main([*args, "--decontaminate", f"mt-bench,{tmp_path / 'q.jsonl'}"]) == 2
    assert main([*args, "--decontaminate", str(tmp_path / "missing.jsonl")]) == 2
    assert not (tmp_path / "o").exists()


def test_a_pool_of_eval_questions_only_stops_with_the_matches_written(tmp_path):
    from crowdselect.cli import main

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"p{j}", "instruction": p["text"], "responses": [
        {"model": g, "response": "x", "reward": float(i)} for i, (g, _, _) in enumerate(CROWD)]}) + "\n"
        for j, p in enumerate(planted_rows()[:3])))
    (tmp_path / "c.yaml").write_text("generators:\n" + "".join(f"  - {{name: {n}, family: {f}, size_b: {s}}}\n"
                                                              for n, f, s in CROWD))
    out = tmp_path / "o"
    assert main(["select", "--config", str(tmp_path / "c.yaml"), "--input", str(pool), "--out", str(out),
                 "--no-cluster", "--k", "2", "--decontaminate", "mt-bench", "--executor", "local"]) == 2
    assert [r["id"] for r in read_jsonl(out / "contamination.jsonl")] == ["p0", "p1", "p2"]
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("against", [None, []])
def test_experiment_selections_are_decontaminated_against_its_own_eval_questions(tmp_path, against):
    """An experiment whose PROXY holds two of the pool's instructions: by default its selections lose them."""
    from crowdselect.pipeline.experiment import Crowd, ensure_selection
    from crowdselect.pipeline.experiment_config import load_experiment_config

    pool = tmp_path / "pool.jsonl"
    write_pool(pool)
    held = ordinary_instructions()[:2]
    (tmp_path / "held.jsonl").write_text("".join(json.dumps({"id": f"h{i}", "instruction": t}) + "\n"
                                                 for i, t in enumerate(held)))
    exp = {"crowd": {"input": [str(pool)], "config": "unused.yaml"}, "strategies": [{"name": "crowdselect"}],
           "students": [{"name": "s", "model": "pkg:smollm2-135m-instruct"}], "k": 8, "clusters": 2,
           "baseline": "crowdselect",
           "eval": {"mtbench": False, "proxy": {"instructions": str(tmp_path / "held.jsonl")}},
           "out": str(tmp_path / "exp")}
    if against is not None:
        exp["decontaminate"] = {"against": against}
    (tmp_path / "exp.yaml").write_text(json.dumps(exp))
    cfg = load_experiment_config(str(tmp_path / "exp.yaml"))
    crowd = Crowd({"path": [str(pool)], "format": "canonical"},
                  [{"name": n, "family": f, "size_b": s} for n, f, s in CROWD], {"input": [str(pool)]})
    out = Path(ensure_selection(cfg, crowd, cfg.strategies[0], 0))
    run = json.loads((out / "run.json").read_text())
    if against is None:
        assert cfg.decontaminate.against == [str(tmp_path / "held.jsonl")]
        assert [f["id"] for f in read_jsonl(out / "contamination.jsonl")] == ["real-00", "real-01"]
        assert run["counts"]["decontaminated_instructions"] == 2
        card = (out / "exports" / "hf" / "README.md").read_text()
        assert "held.jsonl (2 questions, 2 texts): 2 instruction(s)" in card
    else:
        assert run["decontamination"] is None
