"""Steps keyed by their settings (pipeline/cells.py) and an eval's own rerun (eval/resume.py): a step done with
the same settings is skipped, an unfinished one resumed, a changed one emptied and redone saying which key
changed; scheduling keys change nothing; a rerun of an eval keeps every judgment but the failed ones. Also the
proxy's held-out check. Local folders, no Ray, no models."""

import json

import pytest

from crowdselect.core.config import build
from crowdselect.core.errors import UserError
from crowdselect.eval.config import EvalConfig
from crowdselect.eval.resume import STATE, eval_settings, open_previous
from crowdselect.pipeline import cells
from crowdselect.train.config import TrainConfig


def test_a_step_is_skipped_resumed_or_redone_by_its_settings(tmp_path, capsys):
    folder = str(tmp_path / "train")
    step = cells.Step("c: train", folder, {"train": {"lr": 1e-5, "epochs": 3}, "data": "abc"}, "train.json")
    assert cells.open_step(step) is False  # new
    (tmp_path / "train" / "checkpoint").write_text("half done")
    assert cells.open_step(step) is False  # same settings, not finished: resumed, files kept
    assert (tmp_path / "train" / "checkpoint").exists() and "resumed" in capsys.readouterr().err
    cells.finish_step(step)
    assert cells.open_step(step) is False  # recorded done, but its train.json is gone: resumed
    (tmp_path / "train" / "train.json").write_text("{}")
    cells.finish_step(step)
    assert cells.open_step(step) is True  # done: skipped
    changed = cells.Step("c: train", folder, {"train": {"lr": 2e-5, "epochs": 3}, "data": "abc"}, "train.json")
    assert cells.open_step(changed) is False
    assert "c: train: redone: settings changed (train.lr)" in capsys.readouterr().err
    assert not (tmp_path / "train" / "checkpoint").exists()
    record = json.loads((tmp_path / "train" / cells.STEP_FILE).read_text())
    assert record["done"] is False and record["digest"] == changed.digest


def test_a_folder_without_recorded_settings_is_redone(tmp_path, capsys):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "summary.json").write_text("{}")
    assert cells.open_step(cells.Step("c: eval", str(tmp_path / "eval"), {"x": 1}, "summary.json")) is False
    assert "made without recorded settings" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_train_settings_leave_out_where_things_go_but_not_what_is_learned(tmp_path):
    data = tmp_path / "selected.jsonl"
    data.write_text('{"id": "a"}\n')

    def settings(**extra):
        base = {"data": {"path": [str(data)]}, "out": str(tmp_path / "o")}
        for key, value in extra.items():
            section, _, name = key.partition("__")
            base.setdefault(section, {})[name] = value
        return cells.train_settings(build(TrainConfig, base, file="t"), str(data))

    same = settings()
    assert settings(checkpoint__keep=5, tracking__project="x") == same
    assert settings(optim__lr=2e-5) != same and settings(scaling__workers=8) != same  # workers: the global batch
    assert settings(optim__loss_normalization="sequence") != same
    data.write_text('{"id": "b"}\n')
    assert settings()["data"] != same["data"]  # other rows, other training


def eval_cfg(tmp_path, **extra):
    data = {"model": {"model": str(tmp_path / "model")}, "out": str(tmp_path / "eval"),
            "judge_api": {"model": "j", "base_url": "http://127.0.0.1:9/v1"}, **extra}
    return build(EvalConfig, data, file="e.yaml")


def test_eval_settings_follow_what_decides_the_scores_not_scheduling(tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question_id": 1, "turns": ["Hi?"]}\n')
    base = eval_settings(eval_cfg(tmp_path, questions=str(questions)))
    assert eval_settings(eval_cfg(tmp_path, questions=str(questions), ray={"num_cpus": 4})) == base
    busy = eval_cfg(tmp_path, questions=str(questions))
    busy.judge_api.max_in_flight, busy.judge_api.replicas, busy.judge_api.api_key_env = 64, 4, "OTHER_KEY"
    assert eval_settings(busy) == base
    assert eval_settings(eval_cfg(tmp_path, questions=str(questions), model={
        "model": str(tmp_path / "model"), "temperature": 0})) != base
    questions.write_text('{"question_id": 1, "turns": ["Hello?"]}\n')
    assert eval_settings(eval_cfg(tmp_path, questions=str(questions)))["files"] != base["files"]


def test_an_eval_rerun_keeps_judgments_but_not_failed_requests(tmp_path):
    cfg = eval_cfg(tmp_path)
    prev, note = open_previous(cfg)
    assert note is None and not prev.scores
    out = tmp_path / "eval"
    (out / "answers.jsonl").write_text(json.dumps({"question_id": 1, "answers": ["a", "b"],
                                                   "turn_errors": [None, None]}) + "\n")
    (out / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"question_id": 1, "turn": 1, "score": 7.0, "error": None, "answer_error": None},
        {"question_id": 1, "turn": 2, "score": None, "error": "judge: HTTP 503", "answer_error": None}]))
    (out / "pairwise.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"question_id": 1, "game": 1, "label": None, "judgment": "no label", "error": None},
        {"question_id": 1, "game": 2, "label": None, "judgment": None, "error": "connection refused"}]))
    prev, note = open_previous(cfg)
    assert list(prev.scores) == [(1, 1)] and list(prev.answers) == [1] and list(prev.games) == [(1, 1)]
    assert "kept 1 answered questions, 1 judgments" in note
    other = eval_cfg(tmp_path, turns=1)
    prev, note = open_previous(other)
    assert not prev.answers and "other settings (config.turns)" in note
    assert not (out / "answers.jsonl").exists() and (out / STATE).exists()  # stale results removed


def test_held_out_instructions_must_not_be_in_the_selection(tmp_path):
    selected = tmp_path / "selected.jsonl"
    selected.write_text(json.dumps({"id": "x", "instruction": "Name a  Color."}) + "\n")
    held = tmp_path / "held.jsonl"
    held.write_text(json.dumps({"instruction": "Say hi."}) + "\n")
    cells.check_held_out(str(selected), str(held), None, "random")
    held.write_text(json.dumps({"instruction": "name a color."}) + "\n" + json.dumps({"instruction": "Say hi."}) + "\n")
    with pytest.raises(UserError, match=r"1 of the held-out instructions .* are in the random selection"):
        cells.check_held_out(str(selected), str(held), None, "random")


def test_the_crowd_version_follows_the_files_or_the_run_manifest(tmp_path):
    crowd = tmp_path / "crowd.jsonl"
    crowd.write_text('{"id": "a"}\n')
    first = cells.crowd_version([str(crowd)])
    crowd.write_text('{"id": "b"}\n')
    assert cells.crowd_version([str(crowd)]) != first  # other rows, other selection
    run_crowd = tmp_path / "run" / "crowd"
    run_crowd.mkdir(parents=True)
    (run_crowd / "shard-00000.parquet").write_bytes(b"x")
    (run_crowd / "_manifest.json").write_text(json.dumps({"fingerprint": "f1", "shards": {}, "extra": {"written": "1"}}))
    v1 = cells.crowd_version([str(run_crowd)])
    (run_crowd / "_manifest.json").write_text(json.dumps({"fingerprint": "f1", "shards": {}, "extra": {"written": "2"}}))
    assert cells.crowd_version([str(run_crowd)]) != v1  # the run rewrote a shard
