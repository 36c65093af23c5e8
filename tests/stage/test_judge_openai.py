"""The OpenAI-compatible judge (eval/judging.py) against a real local server (tests/stage/openai_server.py,
SmolLM2 behind /v1/chat/completions): FastChat prompts go out, judgments come back through Ray Data, ratings
and A/B verdicts are read from the text, 503s are retried by the shared retry code, a real model's judgment
is counted whether or not it holds a rating, and the key never shows in the outputs.

Scripted verdicts use the server's `SAY:` hook inside the judged answer (the judge replies with that text),
so the parsing is checked through the HTTP path; the plain answers get the real model's judgment.
"""

import json
import os
import urllib.request

import pytest
from openai_server import start_server

from crowdselect.core.config import build
from crowdselect.eval import questions as qs
from crowdselect.eval.config import EvalConfig, PairwiseConfig
from crowdselect.eval.job import judge_mtbench
from crowdselect.eval.pairwise_run import run_pairwise
from crowdselect.eval.summary import UNPARSEABLE
from crowdselect.runtime.models import resolve_model

KEY = "sk-judge-test-not-a-real-key-5e2a"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    yield from start_server(resolve_model("pkg:smollm2-135m-instruct"), KEY)


@pytest.fixture
def cfg(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CS_TEST_JUDGE_KEY", KEY)
    return build(EvalConfig, {"model": {"model": "unused"}, "turns": 1, "out": str(tmp_path),
                              "judge_api": {"model": "test-model", "base_url": f"{server}/v1", "max_tokens": 24,
                                            "api_key_env": "CS_TEST_JUDGE_KEY", "resources": {"max_in_flight": 2}}},
                 file="test")


def answered(ids, texts):
    return [{"question_id": i, "answers": [t], "answer_error": None} for i, t in zip(ids, texts, strict=True)]


def test_single_answer_grading_through_the_endpoint(ray_local, cfg, server):
    questions = qs.load_questions(categories=["writing"], limit=5)
    texts = ["SAY:The answer is fine. Rating: [[7]]", "SAY:Good overall. [[8.5]]", "SAY:I cannot tell.",
             "FLAKY SAY:Rating: 6", "The capital of France is Paris."]
    records = judge_mtbench(cfg, questions, answered([q["question_id"] for q in questions], texts))
    assert [r["score"] for r in records[:4]] == [7.0, 8.5, None, 6.0]
    assert records[2]["error"] == UNPARSEABLE and records[2]["judgment"] == "I cannot tell."
    real = records[4]
    assert real["judgment"], "the real model's judgment came back empty"
    assert (real["score"] is not None) != (real["error"] == UNPARSEABLE)
    attempts = json.loads(urllib.request.urlopen(f"{server}/stats").read())["attempts"]
    assert max(n for text, n in attempts.items() if "FLAKY" in text) == 3  # two 503s, then the answer
    assert KEY not in json.dumps(records)


def test_pairwise_with_swapped_positions_through_the_endpoint(ray_local, cfg, tmp_path):
    questions = qs.load_questions(categories=["roleplay"], limit=2)
    ids = [q["question_id"] for q in questions]
    base = tmp_path / "baseline.jsonl"
    base.write_text("".join(json.dumps({"question_id": i, "choices": [{"turns": [t]}]}) + "\n"
                            for i, t in zip(ids, ["SAY:[[B]]", "SAY:[[A]]"], strict=True)))
    cfg.pairwise = build(PairwiseConfig, {"baseline_answers": str(base), "bootstrap": 200}, file="test")
    # q1: the judge picks the student in both positions -> 1; q2: it always says A (position bias) -> 0.5
    records, result = run_pairwise(cfg, questions, answered(ids, ["SAY:[[A]]", "SAY:[[A]]"]))
    assert [(r["question_id"], r["game"], r["verdict"]) for r in records] == \
        [(ids[0], 1, "A"), (ids[0], 2, "B"), (ids[1], 1, "A"), (ids[1], 2, "A")]
    assert result["win_rate"] == 0.75 and result["questions"] == 2 and result["unreadable"] == 0
    assert result["ci95"][0] <= 0.75 <= result["ci95"][1]
    assert os.environ["CS_TEST_JUDGE_KEY"] not in json.dumps(records)
