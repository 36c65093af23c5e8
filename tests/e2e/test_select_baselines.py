"""Model-based baseline strategies through `crowdselect select`, with the real SmolLM2 as student/judge."""

import json

import pyarrow.parquet as pq
import pytest

from bench import synthetic
from crowdselect.cli import main

CROWD = [("a-1b", "a", 1), ("a-7b", "a", 7), ("b-2b", "b", 2)]
QUESTIONS = ["What is the boiling point of water at sea level?", "Write a haiku about autumn leaves.",
             "Explain recursion to a child.", "Translate 'good morning' into French.",
             "List three prime numbers greater than 10.", "Why is the sky blue?",
             "Give a tip for writing clean Python code.", "What does HTTP stand for?"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    d = tmp_path_factory.mktemp("bl")
    rows = synthetic.canonical_rows(QUESTIONS, CROWD, seed=5)
    for r in rows:  # give the crowd real answers so the student's perplexities mean something
        for a in r["responses"]:
            a["response"] = f"Here is a short answer about: {r['instruction'].lower()}"
    synthetic.write_jsonl(d / "p.jsonl", rows)
    (d / "c.yaml").write_text(synthetic.crowd_yaml(CROWD) + "baselines:\n"
                              "  ifd: {name: student, model: pkg:smollm2-135m-instruct, max_length: 256}\n"
                              "  tags: {name: tagger, model: pkg:smollm2-135m-instruct, max_new_tokens: 24}\n")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ifd", "tags"])
def test_model_baseline_strategies_select_k_rows(ray_local, pool, tmp_path, strategy):
    out = tmp_path / strategy
    assert main(["select", "--config", str(pool / "c.yaml"), "--input", str(pool / "p.jsonl"), "--out", str(out),
                 "--k", "3", "--no-cluster", "--strategy", strategy]) == 0
    sel = [json.loads(x) for x in (out / "selected.jsonl").read_text().splitlines()]
    assert len(sel) == 3
    scores = pq.read_table(out / "scores.parquet").to_pandas()
    assert len(scores) == len(QUESTIONS)
    if strategy == "ifd":
        assert scores["ifd"].notna().all() and (scores["ifd"] > 0).all()
        top = scores.sort_values(["ifd", "id"], ascending=[False, True]).head(3)
        assert set(top.id) == {s["id"] for s in sel}
    else:
        assert scores["tags"].map(len).sum() > 0


def test_baseline_strategy_without_its_model_is_a_config_error(pool, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(synthetic.crowd_yaml(CROWD))
    assert main(["select", "--config", str(tmp_path / "c.yaml"), "--input", str(pool / "p.jsonl"),
                 "--out", str(tmp_path / "o"), "--strategy", "ifd"]) == 2
    assert "baselines.ifd: the strategy needs a model" in capsys.readouterr().err
