"""What `crowdselect select` leaves in DIR when the input is odd: no stale report, strict JSON, user text drawn
as text, every row accounted for. In this process (`--executor local`) unless the reader is what is tested:
then on Ray Data too, on blocks of 3 lines, with the same answer."""

import json
from pathlib import Path

from bench import synthetic
from crowdselect.cli import main


def strict_json(path: Path):
    """json.loads that refuses NaN / Infinity, as browsers and jq do."""
    def refuse(token):
        raise ValueError(f"{path}: bare {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def crowd_files(tmp_path, generators, n=12, seed=0):
    rows = synthetic.canonical_rows([f"Question number {i}?" for i in range(n)], generators, seed=seed)
    yaml = "generators:\n" + "".join(f"  - {{name: '{g}', family: {f}, size_b: {s}}}\n" for g, f, s in generators)
    (tmp_path / "c.yaml").write_text(yaml)
    synthetic.write_jsonl(tmp_path / "p.jsonl", rows)
    return rows


def select(tmp_path, out, *extra, data="p.jsonl"):
    return main(["select", "--config", str(tmp_path / "c.yaml"), "--input", str(tmp_path / data), "--out",
                 str(out), "--no-cluster", "--k", "4", "--executor", "local", *extra])


def test_a_failed_rerun_leaves_no_report_of_the_earlier_run(tmp_path):
    crowd_files(tmp_path, [("a", "f", 1), ("b", "f", 2), ("c", "g", 3)])
    assert select(tmp_path, tmp_path / "o") == 0
    assert (tmp_path / "o" / "report.html").exists()
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "instruction": "q"}\n')
    assert select(tmp_path, tmp_path / "o", data="bad.jsonl") == 2
    assert not (tmp_path / "o" / "report.html").exists() and not (tmp_path / "o" / "run.json").exists()


def test_a_generator_name_with_dollar_signs_is_drawn_as_text(tmp_path):
    """`$\\foo{$` read as mathtext failed the report (a warning, exit 0, no report.html)."""
    crowd_files(tmp_path, [("$\\foo{$", "f", 1), ("b$", "f", 2), ("c", "g", 3)])
    assert select(tmp_path, tmp_path / "o") == 0
    page = (tmp_path / "o" / "report.html").read_text()
    assert "Reward by generator" in page and page.count("data:image/png;base64,") >= 3
    run = strict_json(tmp_path / "o" / "run.json")
    assert set(run["generator_rewards"]) == {"$\\foo{$", "b$", "c"}


def test_a_family_of_one_size_is_named_in_the_notes(tmp_path):
    """Beside a family with 2 sizes the run goes on; the family whose members share one size is named."""
    crowd_files(tmp_path, [("q-a", "qwen", 7), ("q-b", "qwen", 7), ("g-2", "gemma", 2), ("g-9", "gemma", 9)])
    assert select(tmp_path, tmp_path / "o") == 0
    run = strict_json(tmp_path / "o" / "run.json")
    assert "family 'qwen' (q-a, q-b) has one size, size_b 7: stability needs 2 distinct sizes in a family, so " \
           "this family gives it no signal" in run["decisions"]
    assert run["metric_defined_rows"]["stability"] == 12  # from gemma
    assert "family 'qwen' (q-a, q-b) has one size" in (tmp_path / "o" / "summary.txt").read_text()


def test_odd_rows_are_accounted_for_alike_on_both_executors(ray_local, tmp_path):
    """Over blocks of 3 rows, JSONL and Parquet, on Ray Data and in this process: a huge reward is a named
    reject, an invisible answer a counted empty one (never the best), a duplicate id a reject that keeps the
    row with its answers; the four runs give the same files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gens = [("a", "f", 1), ("b", "f", 2), ("c", "g", 3)]
    rows = crowd_files(tmp_path, gens)
    rows[1]["responses"][0]["reward"] = 1.7e308
    rows[4]["responses"][1].update(response="\u200b \ufeff\u2060", reward=99.0)
    rows[7] = {**rows[2], "responses": rows[7]["responses"]}  # the id of row 3 again, other answers
    synthetic.write_jsonl(tmp_path / "p.jsonl", rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    got = {}
    for data in ("p.jsonl", "p.parquet"):
        for executor in ("ray", "local"):
            out = tmp_path / f"{data}-{executor}"
            assert select(tmp_path, out, "--on-bad-rows", "quarantine", "--executor", executor, "--strategy",
                          "reward-top", "input.lines_per_block=3", data=data) == 0
            rej = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
            assert [(r["source"], r["reason"]) for r in rej] == [
                (f"{tmp_path / data}:2", "reward out of range 1.7e+308 for model 'a' (beyond +-1e+50)"),
                (f"{tmp_path / data}:8", f"duplicate id '{rows[2]['id']}' (first at {tmp_path / data}:3)")]
            assert json.loads(rej[1]["raw"])["responses"] == rows[7]["responses"]  # the answers kept
            run = strict_json(out / "run.json")
            assert run["counts"]["input_rows"] == 12 and run["counts"]["rejected_rows"] == 2
            assert run["counts"]["missing_answers"]["empty_response"] == 1
            selected = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
            assert all(s["response"].strip("\u200b \ufeff\u2060") for s in selected)  # never the best
            got[(data, executor)] = (out / "selected.jsonl").read_text(), run["counts"]
    assert len(set(map(repr, got.values()))) == 1
