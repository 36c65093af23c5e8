"""`crowdselect experiment` end to end on a local Ray with real parts: the offline example crowd, two
strategies and one that cannot run (ifd without its model), a real SmolLM2 student trained by Ray Train
(one DeepSpeed worker: the 2-worker runs are tests/e2e/test_train_ray.py's),
evaluated by the judge-free proxy (a real SmolLM2 judge). Then: a rerun skips every finished cell, and a
cell whose eval was killed midway (no cell.json, no summary) is redone alone."""

import json
import os
from pathlib import Path

import pytest

from crowdselect import cli

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
        "eval": {"model": {"max_new_tokens": 4, "resources": {"batch_size": 2}}, "mtbench": False,
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
    assert rows[0] == "strategy,student,metric,mean,spread,seeds,delta,best" and len(rows) == 3
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
