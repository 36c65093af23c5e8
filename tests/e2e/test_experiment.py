"""`crowdselect experiment` end to end on a local Ray with real parts: the offline example crowd, two
strategies and one that cannot run (ifd without its model), a real SmolLM2 student trained by Ray Train
(one DeepSpeed worker: the 2-worker runs are tests/e2e/test_train_ray.py's),
evaluated by the judge-free proxy (a real SmolLM2 judge). Then: a rerun skips every finished cell, and a
cell whose eval was killed midway (no cell.json, no summary) is redone alone.

And MT-bench judged through an OpenAI-compatible server (tests/stage/openai_server.py) that goes away midway:
the cell is marked incomplete and left out of the means; a rerun asks only the failed judge requests; a
changed setting redoes the steps it decides (saying why) and the table shows the new number, not the old."""

import importlib.util
import json
import os
import urllib.request
from pathlib import Path

import pytest
import yaml

from crowdselect import cli
from crowdselect.runtime.models import resolve_model

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SMOL = "pkg:smollm2-135m-instruct"


def write_config(tmp_path) -> str:
    held = tmp_path / "held_out.jsonl"
    held.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in ("Name a color.", "Say hi.")))
    cfg = {
        "crowd": {"input": [str(ROOT / "examples" / "crowd.jsonl")], "config": str(ROOT / "examples" / "crowd.yaml")},
        "strategies": [{"name": "random", "cluster": False}, {"name": "reward-top", "cluster": False},
                       {"name": "ifd", "cluster": False}],
        "k": 2, "clusters": 1, "seeds": [0],  # 2 rows: 2 optimizer steps per cell
        "students": [{"name": "smol", "model": SMOL}],
        "train": {"data": {"max_length": 384, "on_bad_rows": "skip"}, "optim": {"epochs": 1, "grad_accum": 1, "warmup_steps": 0, "lr": 1e-4},
                  "deepspeed": {"precision": "fp32"}, "scaling": {"workers": 1}},  # 2 gloo workers: test_train_ray
        "eval": {"model": {"max_new_tokens": 4, "temperature": 0, "resources": {"batch_size": 2}}, "mtbench": False,
                 "proxy": {"instructions": str(held), "rewards": [
                     {"name": "smol-judge", "model": SMOL, "kind": "judge", "max_length": 256}]}},
        "note": "test scale: differences are noise",
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return str(path)


def cell_json(out: Path, name: str) -> dict:
    return json.loads((out / "cells" / name / "cell.json").read_text())


def test_experiment_runs_records_failures_skips_and_redoes(ray_local, tmp_path, capsys):
    out = tmp_path / "exp"
    path = write_config(tmp_path)
    assert cli.main(["experiment", path, "--out", str(out)]) == 1  # one cell failed, the others ran
    assert "2/3 cells done" in capsys.readouterr().out
    for name in ("random__smol__seed0", "reward-top__smol__seed0"):
        cell = cell_json(out, name)
        assert cell["status"] == "done", cell.get("error")
        assert cell["summary"]["proxy"]["answered"] == 2 and len(cell["selection_digest"]) == 16
    assert cell_json(out, "ifd__smol__seed0")["status"] == "failed"
    md = (out / "results.md").read_text()
    assert "| random |" in md and "| reward-top |" in md and "PROXY" in md and "noise" in md
    assert "ifd__smol__seed0" in md  # listed under failed cells
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("strategy,student,metric,mean,spread,seeds,cells,incomplete,delta,best,expected,")
    assert len(rows) == 3
    assert "## Completeness" in md and "| random__smol__seed0 | PROXY reward | 2 | 2 | 2 | 0 | 0 | 100% | yes |" in md
    assert "(n=1)" in md and (out / "cells.csv").read_text().count("\n") == 3
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert "<table>" in page and "Training loss" in page and "PROXY" in page and "data:image/png;base64," in page
    lineage = json.loads((out / "experiment.json").read_text())
    assert lineage["crowd"]["config"].endswith("crowd.yaml")
    assert {c["cell"] for c in lineage["cells"] if c["status"] == "done"} == \
        {"random__smol__seed0", "reward-top__smol__seed0"}

    # rerun: finished cells are skipped (their files are not rewritten)
    marker = out / "cells" / "random__smol__seed0" / "cell.json"
    before = marker.stat().st_mtime_ns
    assert cli.main(["experiment", path, "--out", str(out)]) == 1
    assert marker.stat().st_mtime_ns == before

    # a cell killed during its eval: no cell.json, no summary -> only that cell's eval is redone
    killed = out / "cells" / "reward-top__smol__seed0"
    (killed / "cell.json").unlink()
    (killed / "eval" / "summary.json").unlink()
    train_json = (killed / "train" / "train.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli.main(["experiment", path, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "reward-top__smol__seed0: eval" in err and "random__smol__seed0" not in err
    assert "train ..." not in err and (killed / "train" / "train.json").stat().st_mtime_ns == train_json
    assert cell_json(out, "reward-top__smol__seed0")["status"] == "done"
    assert marker.stat().st_mtime_ns == before
    assert os.path.exists(killed / "eval" / "summary.json")


def openai_server():
    """tests/stage/openai_server.py, imported from its file (tests/stage is not on this layer's path)."""
    path = ROOT / "tests" / "stage" / "openai_server.py"
    spec = importlib.util.spec_from_file_location("openai_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mtbench_config(tmp_path, base_url: str) -> str:
    """One cell, MT-bench on two scripted two-turn questions judged through the server: the judge replies
    what follows SAY: in the first question turn it sees, so question 1 scores 8 and question 2 scores 4."""
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in [
        {"question_id": 1, "category": "writing", "turns": ["Say hi. SAY:Rating: [[8]]", "Now say bye."]},
        {"question_id": 2, "category": "writing", "turns": ["Name a fruit. SAY:Rating: [[4]]", "Another one."]}]))
    cfg = {
        "crowd": {"input": [str(ROOT / "examples" / "crowd.jsonl")], "config": str(ROOT / "examples" / "crowd.yaml")},
        "strategies": [{"name": "random", "cluster": False}], "k": 2, "clusters": 1, "seeds": [0],
        "students": [{"name": "smol", "model": SMOL}],
        "train": {"data": {"max_length": 384, "on_bad_rows": "quarantine"},
                  "optim": {"epochs": 1, "grad_accum": 1, "warmup_steps": 0, "lr": 1e-4},
                  "deepspeed": {"precision": "fp32"}, "scaling": {"workers": 1}},
        "eval": {"model": {"max_new_tokens": 4, "temperature": 0, "resources": {"batch_size": 2}}, "questions": str(questions),
                 "turns": 2, "judge_api": {"name": "scripted", "model": "test-model", "base_url": f"{base_url}/v1",
                                           "api_key_env": "CS_TEST_JUDGE_KEY", "max_retries": 1,
                                           "max_in_flight": 1}},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(json.dumps(cfg))
    return str(path)


def test_judge_gone_midway_then_retried_and_a_changed_setting_redone(ray_local, tmp_path, capsys, monkeypatch):
    server = openai_server()
    key, port = "sk-test-judge-4c1d", server.free_port()
    monkeypatch.setenv("CS_TEST_JUDGE_KEY", key)
    model_dir = resolve_model(SMOL)
    out = tmp_path / "exp"
    name = "random__smol__seed0"

    # run 1: the judge answers 2 of the 4 turns, then goes away: the cell is done but incomplete
    dying = server.start_server(model_dir, key, "--die-after", "2", port=port)
    path = mtbench_config(tmp_path, next(dying))
    assert cli.main(["experiment", path, "--out", str(out)]) == 0
    assert "1 below the completeness threshold" in capsys.readouterr().out
    dying.close()
    summary = cell_json(out, name)["summary"]
    assert summary["completeness"]["mtbench"] == {"expected": 4, "answered": 4, "judged": 2, "unparseable": 0,
                                                  "failed": 2, "usable": 2}
    md = (out / "results.md").read_text()
    assert "— (n=0 of 1 complete)" in md and "**no** (< 95%)" in md and "| 4 | 4 | 2 | 0 | 2 | 50% |" in md
    answers = (out / "cells" / name / "eval" / "answers.jsonl").read_text()

    # run 2: the judge is back; only the 2 failed turns are asked, nothing is trained or answered again
    capsys.readouterr()
    back = server.start_server(model_dir, key, port=port)
    next(back)
    try:
        assert cli.main(["experiment", path, "--out", str(out)]) == 0
        asked = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats").read())["attempts"]
        err = capsys.readouterr().err
        assert sum(asked.values()) == 2, asked
        assert "asking the 2 failed judge requests again" in err and "train ..." not in err
        assert (out / "cells" / name / "eval" / "answers.jsonl").read_text() == answers
        summary = cell_json(out, name)["summary"]
        assert summary["failed"] == 0 and summary["mean"] == 6.0  # (8 + 8 + 4 + 4) / 4
        assert "| random | 6.000 (n=1) |" in (out / "results.md").read_text()

        # run 3: one setting changed (the first question only): the eval is redone, the training kept, and
        # the table holds the new number (8), not the old (6)
        assert cli.main(["experiment", path, "--out", str(out), "eval.limit=1"]) == 0
        err = capsys.readouterr().err
        assert f"{name}: eval: redone: settings changed (eval.config.limit" in err and "train ..." not in err
        assert cell_json(out, name)["summary"]["mean"] == 8.0
        assert "| random | 8.000 (n=1) |" in (out / "results.md").read_text()

        # run 4: a training setting changed: the training and the eval after it are redone
        assert cli.main(["experiment", path, "--out", str(out), "eval.limit=1", "train.optim.lr=2e-4"]) == 0
        err = capsys.readouterr().err
        assert f"{name}: train: redone: settings changed (train.optim.lr)" in err
        assert f"{name}: eval: redone: settings changed (train)" in err
        trained = yaml.safe_load((out / "cells" / name / "train" / "train_config.yaml").read_text())
        assert trained["optim"]["lr"] == 2e-4
    finally:
        back.close()
