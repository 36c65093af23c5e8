"""The README's train path (examples/train.yaml, paper settings, a 16-row selection, 1 epoch = 4 steps)
really trains: warmup is scaled and stated, the configured lr is reached, and the weights move. OUT is a
relative path, as on the README's command line (Ray Train workers run in another working directory)."""

import json
from pathlib import Path

import pytest

from crowdselect.core import columns as C
from crowdselect.runtime.models import resolve_model
from crowdselect.train.config import load_train_config
from crowdselect.train.job import run_training

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Name a primary color.", "Red is a primary color."),
      ("What is 2 + 3?", "2 + 3 equals 5."),
      ("Translate 'hello' to Spanish.", "'Hello' in Spanish is 'hola'.")]


def test_example_config_moves_the_weights(ray_local, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    data = tmp_path / "selected.jsonl"
    data.write_text("".join(json.dumps({C.ID: f"r{i}", C.MESSAGES: [{"role": "user", "content": q},
                                                                  {"role": "assistant", "content": a}]}) + "\n"
                            for i, (q, a) in enumerate(QA * 4)))
    monkeypatch.chdir(tmp_path)
    cfg = load_train_config(str(ROOT / "examples" / "train.yaml"), "run",
                            [f"data.path={data}", "deepspeed.precision=fp32", "optim.epochs=1", "data.max_length=128"])
    summary = run_training(cfg)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["total_steps"] == 4 and report["warmup_steps"] == 0
    assert report["schedule_notice"] == "optim.warmup_steps 150 >= 4 total steps: using 0 (10% of the run)"
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert max(lrs) == pytest.approx(cfg.optim.lr)
    base = load_file(str(Path(resolve_model(cfg.model.name), "model.safetensors")))
    trained = load_file(str(Path(summary["model"], "model.safetensors")))
    changed = [k for k in base if k in trained and not base[k].to(trained[k].dtype).equal(trained[k])]
    assert len(changed) > len(base) // 2, f"only {len(changed)} of {len(base)} tensors changed"
