"""Reading judgments (FastChat's [[rating]] patterns), FastChat pair-v2 verdicts with swapped positions and
show_result.py's outcome rule, the win rate's bootstrap interval, the counts of every kind of turn, Arena-Hard
question shapes and the eval config's checks. Pure, fast."""

import json

import numpy as np
import pytest

from crowdselect.core.config import ConfigError, build
from crowdselect.eval import questions as qs
from crowdselect.eval.config import EvalConfig
from crowdselect.eval.pairwise import bootstrap_ci, question_outcomes, score
from crowdselect.eval.summary import UNPARSEABLE, judgment_records, summarize_mtbench
from crowdselect.eval.verdicts import parse_rating, parse_verdict


@pytest.mark.parametrize("text, rating", [
    ("The answer is correct and helpful.\n\nRating: [[8]]", 8.0),
    ("Solid, but misses an edge case. [[8.5]]", 8.5),
    ("Rating: 8", 8.0),
    ("Overall I would give it [7].", 7.0),
    ("[[3]] at first, then [[9]]", 3.0),  # FastChat takes the first match
])
def test_ratings_are_read_like_fastchat(text, rating):
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", ["", None, "Great answer!", "Rating: [[eleven]]", "[[0]]", "[[12]]"])
def test_junk_is_unparseable_not_zero(text):
    assert parse_rating(text) is None


def test_unparseable_judgments_are_counted_not_scored_and_failed_answers_are_judged():
    rows = [{"question_id": 1, "category": "writing", "turn": 1, "judgment": "Rating: [[6]]"},
            {"question_id": 1, "category": "writing", "turn": 2, "judgment": "I like it."},
            {"question_id": 2, "category": "math", "turn": 1, "judgment": None, "judge_error": "HTTP 400: bad"},
            {"question_id": 3, "category": "math", "turn": 1, "answer_error": "turn 1: too long",
             "judgment": "The answer is ERROR. Rating: [[1]]"}]  # FastChat judges the "ERROR" answer
    records = judgment_records(rows)
    assert [r["score"] for r in records] == [6.0, None, None, 1.0]
    assert records[1]["error"] == UNPARSEABLE and records[3]["answer_error"] == "turn 1: too long"
    s = summarize_mtbench(records)
    assert (s["scored"], s["unparseable"], s["failed"], s["answer_errors"], s["mean"]) == (2, 1, 1, 1, 3.5)
    assert s["completeness"]["mtbench"] == {"expected": 4, "answered": 3, "judged": 2, "unparseable": 1,
                                            "failed": 1, "usable": 1}
    assert s["completeness"]["turn2"] == {"expected": 1, "answered": 1, "judged": 0, "unparseable": 1,
                                          "failed": 0, "usable": 0}
    assert {f["question_id"] for f in s["failures"]} == {1, 2, 3}


def test_verdicts():
    assert [parse_verdict(t) for t in ("[[A]]", "x [[B]] y", "[[C]]", "", "[[A]] [[B]]")] == \
        ["A", "B", "tie", None, None]


def test_pair_v2_scores_questions_as_fastchat_show_result():
    # q1: the model wins in both positions; q2: the judge always says A (position bias) -> tie; q3: the model
    # loses both; q4: a tie in game 1 -> tie (FastChat), q5: an unreadable game -> the question is dropped
    v = [(1, 1, "A"), (1, 2, "B"), (2, 1, "A"), (2, 2, "A"), (3, 1, "B"), (3, 2, "A"), (4, 1, "tie"), (4, 2, "B"),
         (5, 1, "A"), (5, 2, None)]
    outcomes, counts = question_outcomes(v)
    assert outcomes.tolist() == [1.0, 0.5, 0.0, 0.5] and counts == {"questions": 5, "pairs": 4, "dropped": 1}
    r = score(v, n_boot=500, seed=3)
    assert r["win_rate"] == pytest.approx(2.0 / 4)  # (wins + ties / 2) / questions
    assert (r["wins"], r["ties"], r["losses"], r["games"], r["pairs"]) == (1, 2, 1, 10, 4)
    assert r["labels"] == {"A": 5, "B": 3, "tie": 1, "unreadable": 1}


def test_bootstrap_with_fixed_seed_matches_a_hand_loop():
    scores = np.array([1.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0])
    rng = np.random.default_rng(7)
    means = [scores[rng.integers(0, 7, size=7)].mean() for _ in range(400)]
    expected = tuple(round(float(x), 4) for x in np.percentile(means, [2.5, 97.5]))
    assert bootstrap_ci(scores, n_boot=400, seed=7) == expected
    lo, hi = expected
    assert lo < scores.mean() < hi and 0.0 <= lo and hi <= 1.0


def test_a_pair_with_an_unreadable_game_is_dropped_whole():
    r = score([(1, 1, None), (1, 2, "B"), (2, 1, "A"), (2, 2, "B")], n_boot=10)
    assert r["win_rate"] == 1.0 and r["pairs"] == 1 and r["dropped"] == 1


def test_arena_hard_questions_and_answers(tmp_path):
    q = tmp_path / "question.jsonl"
    q.write_text(json.dumps({"question_id": "a1", "category": "arena-hard-v0.1", "turns": [{"content": "Hi?"}]})
                 + "\n" + json.dumps({"uid": "b2", "category": "hard_prompt", "prompt": "Why?"}) + "\n")
    rows = qs.load_questions(str(q))
    assert [(r["question_id"], r["turns"]) for r in rows] == [("a1", ["Hi?"]), ("b2", ["Why?"])]
    a = tmp_path / "answers.jsonl"
    a.write_text(json.dumps({"question_id": "a1", "choices": [{"turns": [{"content": "Hello."}]}]}) + "\n")
    assert qs.load_model_answers(str(a)) == {"a1": ["Hello."]}


def test_fastchat_prompts_keep_the_explanation_for_judgment_mode():
    full = qs.load_judge_prompts(for_logprob=False)
    assert "Begin your evaluation by providing a short explanation" in full[(1, False)]["prompt"]
    assert "{instruction}" in full[(1, False)]["prompt"] and "{ref_answer_1}" in full[(1, True)]["prompt"]
    assert "{answer_1}" in full[(2, False)]["prompt"]
    pair = qs.load_pair_prompts()
    assert "[[C]]" in pair[False]["system"] and "{answer_b}" in pair[False]["prompt"]


def test_config_needs_a_judge_unless_proxy_only():
    model = {"model": "m"}
    with pytest.raises(ConfigError, match="judge: MT-bench and pairwise need a judge"):
        build(EvalConfig, {"model": model}, file="e.yaml")
    with pytest.raises(ConfigError, match="rating: logprob reads a local judge"):
        build(EvalConfig, {"model": model, "rating": "logprob",
                           "judge_api": {"model": "j", "base_url": "http://x/v1"}}, file="e.yaml")
    cfg = build(EvalConfig, {"model": model, "mtbench": False, "proxy": {"instructions": "h.jsonl"}}, file="e.yaml")
    assert cfg.judge_label["rating"] == "proxy"
