"""The OpenAI-compatible judge (eval/judging.py) against a real local server (tests/stage/openai_server.py,
SmolLM2 behind /v1/chat/completions): FastChat prompts go out, judgments come back through Ray Data, ratings
and A/B verdicts are read from the text, 503s are retried by the shared retry code, a real model's judgment
is counted whether or not it holds a rating, Arena-Hard-Auto's judge is asked to go on when it gives no label,
and the key never shows in the outputs.

Scripted verdicts use the server's `SAY:` hook inside the judged answer (the judge replies with that text;
`THEN:` is its reply when asked to go on), so the parsing is checked through the HTTP path; the plain answers
get the real model's judgment.
"""

import json
import os
import urllib.request

import pytest
from openai_server import start_server

from crowdselect.core.config import build
from crowdselect.eval import questions as qs
from crowdselect.eval.arena_hard import CONTINUE
from crowdselect.eval.config import EvalConfig, PairwiseConfig
from crowdselect.eval.job import judge_mtbench
from crowdselect.eval.pairwise_run import run_pairwise
from crowdselect.eval.resume import Previous
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
    return [{"question_id": i, "answers": [t], "turn_errors": [None]} for i, t in zip(ids, texts, strict=True)]


def baseline_file(tmp_path, ids, texts):
    base = tmp_path / "baseline.jsonl"
    base.write_text("".join(json.dumps({"question_id": i, "choices": [{"turns": [t]}]}) + "\n"
                            for i, t in zip(ids, texts, strict=True)))
    return str(base)


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


def test_pair_v2_with_swapped_positions_through_the_endpoint(ray_local, cfg, tmp_path):
    questions = qs.load_questions(categories=["roleplay"], limit=2)
    ids = [q["question_id"] for q in questions]
    base = baseline_file(tmp_path, ids, ["SAY:[[B]]", "SAY:[[A]]"])
    cfg.pairwise = build(PairwiseConfig, {"baseline_answers": base, "mode": "pair-v2", "bootstrap": 200}, file="t")
    # q1: the judge picks the model in both positions -> win; q2: it always says A (position bias) -> tie
    _, records, result = run_pairwise(cfg, questions, answered(ids, ["SAY:[[A]]", "SAY:[[A]]"]), Previous())
    assert [(r["question_id"], r["game"], r["label"]) for r in records] == \
        [(ids[0], 1, "A"), (ids[0], 2, "B"), (ids[1], 1, "A"), (ids[1], 2, "A")]
    assert result["win_rate"] == 0.75 and result["pairs"] == 2 and result["dropped"] == 0
    assert result["ci95"][0] <= 0.75 <= result["ci95"][1] and result["mode"] == "pair-v2"
    assert os.environ["CS_TEST_JUDGE_KEY"] not in json.dumps(records)


def test_arena_hard_asks_again_for_a_label_and_drops_an_unreadable_pair(ray_local, cfg, server, tmp_path):
    questions = qs.load_questions(categories=["stem"], limit=2)
    ids = [q["question_id"] for q in questions]
    # game 1 has the baseline as A, so its SAY: speaks first; game 2 the model's
    base = baseline_file(tmp_path, ids, ["SAY:let me think\nTHEN:My final verdict: [[B>A]]", "SAY:[[A=B]]"])
    cfg.pairwise = build(PairwiseConfig, {"baseline_answers": base, "bootstrap": 50}, file="t")
    model = ["SAY:My final verdict is [[A>>B]]", "SAY:hard to say\nTHEN:still unsure"]
    _, records, result = run_pairwise(cfg, questions, answered(ids, model), Previous())
    assert [(r["game"], r["label"], r["attempts"]) for r in records] == \
        [(1, "B>A", 2), (2, "A>>B", 1), (1, "A=B", 1), (2, None, 2)]
    assert records[0]["judgment"] == "let me think\nMy final verdict: [[B>A]]"
    # q1: 1 win + 3 wins (strong); q2 dropped whole (its game 2 has no label after 2 attempts)
    assert (result["win_rate"], result["battles"], result["pairs"], result["dropped"]) == (1.0, 4, 1, 1)
    assert result["completeness"]["unparseable"] == 1 and result["completeness"]["usable"] == 1
    attempts = json.loads(urllib.request.urlopen(f"{server}/stats").read())["attempts"]
    assert attempts[CONTINUE] == 2  # the two replies without a label were followed up
