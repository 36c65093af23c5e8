"""`crowdselect select` end to end on a local Ray cluster with the real MiniLM embedder."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench import synthetic
from crowdselect.cli import main

SMALL_CROWD = [("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2), ("b-9b", "b", 9), ("c-3b", "c", 3)]
N_POOL = 300  # 6 clusters of ~50: every quota of 5 is a real choice, and embedding stays seconds
K, CLUSTERS = 30, 6
QUOTA = K // CLUSTERS


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("pool")
    rows = synthetic.canonical_rows(synthetic.sharegpt_instructions(N_POOL), SMALL_CROWD, seed=3)
    synthetic.write_jsonl(d / "crowd.jsonl", rows)
    (d / "crowd.yaml").write_text(synthetic.crowd_yaml(SMALL_CROWD))
    return d, rows


def run_select(pool_dir, out, *extra):
    return main(["select", "--config", str(pool_dir / "crowd.yaml"), "--input", str(pool_dir / "crowd.jsonl"),
                 "--out", str(out), *extra])


def read_jsonl(p):
    return [json.loads(x) for x in Path(p).read_text().splitlines()]


@pytest.mark.slow
def test_clustered_selection_end_to_end_and_deterministic(ray_local, pool, tmp_path):
    pool_dir, rows = pool
    assert run_select(pool_dir, tmp_path / "a", "--k", str(K), "--clusters", str(CLUSTERS), "--executor", "ray") == 0
    out = tmp_path / "a"
    sel = read_jsonl(out / "selected.jsonl")
    assert len(sel) == K and len({s["id"] for s in sel}) == K
    by_id = {r["id"]: r for r in rows}
    for s in sel:  # the kept answer is the crowd's best-rewarded one
        best = max(by_id[s["id"]]["responses"], key=lambda a: a["reward"])
        assert (s["model"], s["response"], s["reward"]) == (best["model"], best["response"], best["reward"])
        assert s["messages"] == [{"role": "user", "content": s["instruction"]},
                                 {"role": "assistant", "content": s["response"]}]
    scores = pq.read_table(out / "scores.parquet").to_pandas()
    assert len(scores) == N_POOL and scores["selected"].sum() == K
    assert set(scores.loc[scores.selected, "id"]) == {s["id"] for s in sel}
    sizes = scores.groupby("cluster").size()
    picked = scores[scores.selected].groupby("cluster").size().reindex(sizes.index, fill_value=0)
    assert (picked >= np.minimum(sizes, QUOTA)).all()  # equal quota, or the whole cluster
    # a cluster's quota is its best-scored rows (ties by id)
    for _, grp in scores.groupby("cluster"):
        top = grp.sort_values(["score", "id"], ascending=[False, True]).head(QUOTA)
        assert top.selected.all()
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["input_rows"] == N_POOL and run["counts"]["rejected_rows"] == 0
    assert run["kmeans"]["fit_rows"] == N_POOL
    # summary.txt's cluster table: every cluster with its pool size and selected count, as scores.parquet has them
    summary = (out / "summary.txt").read_text()
    assert " ".join(summary.split()).count(f"input rows {N_POOL:,} = accepted {N_POOL:,} + rejected 0") == 1
    assert f"clusters (quota {QUOTA} each, remainder by score)" in summary
    table = summary.split("  cluster      pool  selected\n", 1)[1].split("\n\n", 1)[0].splitlines()
    got = [tuple(int(x.replace(",", "")) for x in line.split()) for line in table]
    assert got == [(int(c), int(sizes[c]), int(picked[c])) for c in sorted(sizes.index)]
    assert len(got) == CLUSTERS and sum(n for _, n, _ in got) == N_POOL and sum(p for _, _, p in got) == K
    assert (out / "metrics.png").stat().st_size > 0
    lf = json.loads((out / "exports/llamafactory/dataset_info.json").read_text())
    assert lf["crowdselect"]["formatting"] == "alpaca"
    assert pq.read_table(out / "exports/trl/train.parquet").num_rows == K
    assert run["executor"] == "ray"
    # same inputs and seed, in this process instead of on Ray Data (executor auto: no cluster named, a small
    # pool): byte-identical selection, the same scores for every row, the same summary
    assert run_select(pool_dir, tmp_path / "b", "--k", str(K), "--clusters", str(CLUSTERS)) == 0
    assert json.loads((tmp_path / "b/run.json").read_text())["executor"] == "local"
    assert (tmp_path / "a/selected.jsonl").read_bytes() == (tmp_path / "b/selected.jsonl").read_bytes()
    local = pq.read_table(tmp_path / "b/scores.parquet").sort_by("id")
    ray_scores = pq.read_table(out / "scores.parquet").sort_by("id")
    exact = [c for c in ray_scores.column_names if c not in ("pc1", "pc2")]
    assert local.select(exact).equals(ray_scores.select(exact))
    # the report's 2-D view: torch's float32 sums differ in the last bits with its thread count (an actor
    # has one thread, this process two), so the projected embeddings agree to rounding only
    for c in ("pc1", "pc2"):
        assert np.allclose(local.column(c).to_numpy(), ray_scores.column(c).to_numpy(), atol=1e-4)
    assert (tmp_path / "b/summary.txt").read_text().replace(str(tmp_path / "b"), "") == \
        summary.replace(str(out), "")


def test_long_wide_and_parquet_inputs_give_the_same_selection(ray_local, pool, tmp_path):
    pool_dir, rows = pool
    rows = rows[:300]
    long_rows = [{"id": r["id"], "instruction": r["instruction"], **a} for r in rows for a in r["responses"]]
    synthetic.write_jsonl(tmp_path / "long.jsonl", long_rows[::-1])  # order must not matter
    wide = [{"id": r["id"], "instruction": r["instruction"],
             **{f"{a['model']}_response": a["response"] for a in r["responses"]},
             **{f"{a['model']}_reward": a["reward"] for a in r["responses"]}} for r in rows]
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(wide), tmp_path / "wide.parquet")
    synthetic.write_jsonl(tmp_path / "canon.jsonl", rows)
    outs = {}
    for name, path, executor in (("canon", "canon.jsonl", "auto"), ("long", "long.jsonl", "auto"),
                                 ("wide", "wide.parquet", "auto"), ("long-ray", "long.jsonl", "ray"),
                                 ("wide-ray", "wide.parquet", "ray")):
        assert main(["select", "--config", str(pool_dir / "crowd.yaml"), "--input", str(tmp_path / path),
                     "--out", str(tmp_path / name), "--k", "25", "--no-cluster", "--executor", executor]) == 0
        outs[name] = read_jsonl(tmp_path / name / "selected.jsonl")
    assert outs["canon"] == outs["long"] == outs["wide"] == outs["long-ray"] == outs["wide-ray"]
    run = json.loads((tmp_path / "long" / "run.json").read_text())
    assert run["format"] == "long" and run["counts"]["input_rows"] == len(long_rows)


def bad_pool(tmp_path):
    good = synthetic.canonical_rows([f"Question number {i}?" for i in range(6)], SMALL_CROWD)
    lines = [json.dumps(r) for r in good]
    bad_reward = json.loads(lines[0])
    bad_reward["id"] = "r1"
    bad_reward["responses"][1]["reward"] = "high"
    unknown = json.loads(lines[0])
    unknown["id"] = "u1"
    unknown["responses"][0]["model"] = "gpt-9"
    one = {"id": "o1", "instruction": "x?", "responses": [{"model": "a-1b", "response": "y", "reward": 1.0}]}
    lines += ['{"id": "j1", "instruction": ', json.dumps({"id": "m1", "responses": []}), json.dumps(bad_reward),
              json.dumps(unknown), lines[2], json.dumps(one), "[" * 100_000 + "]" * 100_000, '{"id": "t\t1"}']
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    return {7: "invalid JSON", 8: "missing field 'instruction'", 9: "non-numeric reward 'high'",
            10: "unknown model 'gpt-9'", 11: "duplicate id 'ex000002' (first at ", 12: "fewer than 2 answers",
            13: "invalid JSON (nested too deeply)", 14: "invalid JSON (Invalid control character at column 10)"}


def test_bad_rows_fail_with_file_line_reason_and_no_traceback(pool, tmp_path):
    pool_dir, _ = pool
    expected = bad_pool(tmp_path)
    env = {**os.environ, "CROWDSELECT_RAY_TMP": "/tmp/rcs_bad"}
    proc = subprocess.run([sys.executable, "-m", "crowdselect.cli", "select", "--config", str(pool_dir / "crowd.yaml"),
                           "--input", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o"), "--no-cluster",
                           "--k", "3"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for line, reason in expected.items():
        assert f"bad.jsonl:{line}: {reason}" in proc.stderr
    assert "8 bad input row(s)" in proc.stderr
    assert not (tmp_path / "o" / "selected.jsonl").exists()


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_truncated_gzip_crowd_fails_cleanly_from_inside_ray(ray_local, pool, tmp_path, executor):
    """A crowd .jsonl.gz cut short: the read (a Ray read task, or this process) reports the line where the
    stream broke (exit 2), not a traceback; the rows before it were read. The command joins this session's
    Ray as it would a cluster (no second local Ray to start)."""
    import gzip

    pool_dir, _ = pool
    data = gzip.compress((pool_dir / "crowd.jsonl").read_bytes())
    (tmp_path / "crowd.jsonl.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "NOTES.md").write_text("how the crowd was built")
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.run([sys.executable, "-m", "crowdselect.cli", "select", "--config", str(pool_dir / "crowd.yaml"),
                           "--input", str(tmp_path), "--out", str(tmp_path / "o"), "--no-cluster", "--k", "3",
                           "--format", "canonical",  # the format given: the fault is met inside the read
                           "--executor", executor],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "1 bad input row(s)" in proc.stderr
    assert re.search(r"crowd\.jsonl\.gz:\d+: corrupt or truncated file \(Truncated compressed stream\)", proc.stderr)
    assert f"skipped 1 non-data file(s) in {tmp_path}: NOTES.md" in proc.stderr


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_quarantine_accounts_for_every_row(ray_local, pool, tmp_path, executor):
    pool_dir, _ = pool
    expected = bad_pool(tmp_path)
    assert main(["select", "--config", str(pool_dir / "crowd.yaml"), "--input", str(tmp_path / "bad.jsonl"),
                 "--out", str(tmp_path / "q"), "--no-cluster", "--k", "3", "--on-bad-rows", "quarantine",
                 "--executor", executor]) == 0
    rej = read_jsonl(tmp_path / "q" / "rejected.jsonl")
    assert [r["source"].rsplit(":", 1)[1] for r in rej] == [str(k) for k in expected]
    assert all(expected[int(r["source"].rsplit(":", 1)[1])] in r["reason"] for r in rej)
    run = json.loads((tmp_path / "q" / "run.json").read_text())
    c = run["counts"]
    assert c["input_rows"] == 14 and c["accepted_rows"] == 6 and c["rejected_rows"] == 8
    assert len(read_jsonl(tmp_path / "q" / "selected.jsonl")) == 3


def test_a_rerun_into_the_same_folder_leaves_no_output_of_the_earlier_run(ray_local, pool, tmp_path):
    """The first run quarantines bad rows; the clean rerun into the same DIR must not keep rejected.jsonl."""
    pool_dir, rows = pool
    bad_pool(tmp_path)
    args = ["select", "--config", str(pool_dir / "crowd.yaml"), "--out", str(tmp_path / "q"), "--no-cluster",
            "--k", "3", "--on-bad-rows", "quarantine"]
    assert main([*args, "--input", str(tmp_path / "bad.jsonl")]) == 0
    assert (tmp_path / "q" / "rejected.jsonl").exists()
    synthetic.write_jsonl(tmp_path / "clean.jsonl", rows[:40])
    assert main([*args, "--input", str(tmp_path / "clean.jsonl")]) == 0
    run = json.loads((tmp_path / "q" / "run.json").read_text())
    assert run["counts"]["rejected_rows"] == 0 and run["counts"]["input_rows"] == 40
    assert not (tmp_path / "q" / "rejected.jsonl").exists()
    assert pq.read_table(tmp_path / "q" / "scores.parquet").num_rows == 40
    assert not (tmp_path / "q" / ".crowdselect.lock").exists()


def test_config_errors_name_file_and_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generators:\n  - {name: a, family: f, size_b: 1}\nselection:\n  kk: 3\n")
    assert main(["select", "--config", str(cfg), "--input", "x.jsonl", "--out", str(tmp_path)]) == 2
    assert f"{cfg}: selection.kk: unknown key" in capsys.readouterr().err
    cfg.write_text("generators:\n  - {name: a, family: f, size_b: big}\n")
    assert main(["select", "--config", str(cfg), "--input", "x.jsonl", "--out", str(tmp_path)]) == 2
    assert "generators[0].size_b: expected a number" in capsys.readouterr().err
    cfg.write_text("generators:\n  - {name: a, family: f, size_b: 1}\n")
    assert main(["select", "--config", str(cfg), "--input", str(tmp_path / "nope.jsonl"),
                 "--out", str(tmp_path), "--weights", "1,2"]) == 2
    assert "--weights: need 3 numbers" in capsys.readouterr().err  # blamed on the flag, not the file


def test_no_siblings_drops_stability_and_says_so(ray_local, pool, tmp_path):
    _, rows = pool
    crowd = [("x", "fx", 1), ("y", "fy", 2), ("z", "fz", 3)]
    synthetic.write_jsonl(tmp_path / "p.jsonl", synthetic.canonical_rows([r["instruction"] for r in rows[:50]], crowd))
    (tmp_path / "c.yaml").write_text(synthetic.crowd_yaml(crowd))
    assert main(["select", "--config", str(tmp_path / "c.yaml"), "--input", str(tmp_path / "p.jsonl"),
                 "--out", str(tmp_path / "o"), "--k", "5", "--no-cluster"]) == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert any("undefined for every instruction" in d for d in run["decisions"])
    assert all(s["stability"] is None for s in read_jsonl(tmp_path / "o" / "selected.jsonl"))


def test_missing_answers_are_counted_never_best_and_infinite_rewards_rejected(ray_local, tmp_path):
    rows = synthetic.canonical_rows([f"Question number {i}?" for i in range(5)], SMALL_CROWD, seed=1)
    rows[0]["responses"][0].update(response="  ", reward=99.0)  # the top reward on an empty answer
    rows[1]["responses"][1].update(response=None, reward=None)  # did not answer
    rows[2]["responses"][2]["reward"] = None  # answered, no reward
    lines = [json.dumps(r) for r in rows]
    for i, text in enumerate(("Infinity", "-Infinity", "1e400")):
        r = json.loads(lines[4])
        r["id"], r["responses"][3]["reward"] = f"inf{i}", 12345.5
        lines.append(json.dumps(r).replace("12345.5", text))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.yaml").write_text(synthetic.crowd_yaml(SMALL_CROWD))
    assert main(["select", "--config", str(tmp_path / "c.yaml"), "--input", str(tmp_path / "m.jsonl"),
                 "--out", str(tmp_path / "o"), "--no-cluster", "--k", "5", "--strategy", "reward-top",
                 "--on-bad-rows", "quarantine"]) == 0
    rej = read_jsonl(tmp_path / "o" / "rejected.jsonl")
    assert [r["source"].rsplit(":", 1)[1] for r in rej] == ["6", "7", "8"]
    assert all("non-finite reward" in r["reason"] and "model 'b-9b'" in r["reason"] for r in rej)
    sel = {s["id"]: s for s in read_jsonl(tmp_path / "o" / "selected.jsonl")}
    assert len(sel) == 5 and all(s["response"].strip() for s in sel.values())
    best0 = max(rows[0]["responses"][1:], key=lambda a: a["reward"])
    assert (sel["ex000000"]["model"], sel["ex000000"]["reward"]) == (best0["model"], best0["reward"])
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["counts"]["missing_answers"] == {"null_response": 1, "empty_response": 1, "null_reward": 1}
    assert run["counts"]["input_rows"] == 8 and run["counts"]["rejected_rows"] == 3
    assert "3 missing answer(s)" in (tmp_path / "o" / "summary.txt").read_text()


def test_run_json_holds_no_credential_from_the_config(tmp_path, capsys):
    """A key in a generator's base_url userinfo or in a credential-named engine_kwargs entry is *** in run.json."""
    key = "tok3n-Private-9f2e7c"
    crowd = tmp_path / "crowd.yaml"
    examples = Path(__file__).resolve().parents[2] / "examples"
    crowd.write_text((examples / "crowd.yaml").read_text().replace(
        "size_b: 0.5}", f"size_b: 0.5, base_url: 'https://me:{key}@api.example/v1', engine_kwargs: {{token: {key}}}}}"))
    out = tmp_path / "o"
    assert main(["select", "--config", str(crowd), "--input", str(examples / "crowd.jsonl"), "--out", str(out),
                 "--k", "4", "--no-cluster", "--executor", "local"]) == 0
    text = (out / "run.json").read_text()
    assert key not in text and "https://***@api.example/v1" in text
    assert key not in capsys.readouterr().err
