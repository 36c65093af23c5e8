"""The numbers of an evaluation: per-turn score records and summary.json. Pure: dicts in, dicts out.

Every asked turn is judged, a turn whose answer failed by its "ERROR" answer (as FastChat judges it), and
ends in exactly one of: scored (a rating was read), failed (the judge request failed; a rerun asks again), or
unparseable (the judge answered but no rating could be read). Scored turns are in the means, "ERROR" answers
included (FastChat's show_result.py drops only the -1 ratings). Nothing is dropped unseen: `completeness`
counts, per section, the turns expected, answered (not "ERROR"), judged (a rating read), unparseable, failed,
and usable (answered and judged) — the experiment's completeness threshold reads usable / expected.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from crowdselect.core import columns as C
from crowdselect.eval.answer import text_or_none
from crowdselect.eval.judging import JUDGE_ERROR, JUDGE_MASS, JUDGMENT
from crowdselect.eval.verdicts import parse_rating

UNPARSEABLE = "unparseable judgment (no [[rating]])"
COUNT_KEYS = ("expected", "answered", "judged", "unparseable", "failed", "usable")


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _base(r: dict[str, Any]) -> dict[str, Any]:
    return {"question_id": r["question_id"], "category": r["category"], "turn": int(r["turn"]),
            "answer_error": text_or_none(r.get("answer_error"))}


def judgment_records(judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows after `write_judgments` -> {question_id, category, turn, answer_error, score, judgment, error}."""
    out = []
    for r in judged:
        error = text_or_none(r.get(JUDGE_ERROR))
        text = text_or_none(r.get(JUDGMENT))
        score = parse_rating(text) if error is None else None
        if error is None and score is None:
            error = UNPARSEABLE
        out.append({**_base(r), C.SCORE: score, JUDGMENT: text, "error": error})
    return out


def logprob_records(judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows after `logprob_ratings` -> {question_id, category, turn, answer_error, score, judge_mass, error}."""
    out = []
    for r in judged:
        score = r.get(C.SCORE)
        error = text_or_none(r.get(C.error_column(C.SCORE)))
        ok = error is None and score is not None and not math.isnan(score)
        out.append({**_base(r), C.SCORE: float(score) if ok else None,
                    JUDGE_MASS: float(r[JUDGE_MASS]) if ok else None, "error": None if ok else (error or "no score")})
    return out


def is_failed(record: dict[str, Any]) -> bool:
    """The judge request failed (not an unparseable judgment): a rerun asks again."""
    return record["error"] is not None and record["error"] != UNPARSEABLE


def count_turns(records: list[dict[str, Any]]) -> dict[str, int]:
    """{expected, answered, judged, unparseable, failed, usable} over score records.

    >>> count_turns([{"score": 7.0, "error": None, "answer_error": None},
    ...              {"score": 1.0, "error": None, "answer_error": "turn 1: too long"},
    ...              {"score": None, "error": UNPARSEABLE, "answer_error": None},
    ...              {"score": None, "error": "HTTP 503", "answer_error": None}])
    {'expected': 4, 'answered': 3, 'judged': 2, 'unparseable': 1, 'failed': 1, 'usable': 1}
    """
    judged = [r for r in records if r["error"] is None]
    return {"expected": len(records), "answered": sum(r["answer_error"] is None for r in records),
            "judged": len(judged), "unparseable": sum(r["error"] == UNPARSEABLE for r in records),
            "failed": sum(is_failed(r) for r in records),
            "usable": sum(r["answer_error"] is None for r in judged)}


def summarize_mtbench(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the scored turns (overall, by category, by turn), the counts of every kind of turn."""
    ok = [r for r in scored if r["error"] is None]
    by_cat, by_turn = defaultdict(list), defaultdict(list)
    for r in ok:
        by_cat[r["category"]].append(r[C.SCORE])
        by_turn[str(r["turn"])].append(r[C.SCORE])
    counts = count_turns(scored)
    turns = sorted({r["turn"] for r in scored})
    return {
        "questions": len({r["question_id"] for r in scored}), "judged_turns": len(scored),
        "scored": len(ok), "failed": counts["failed"], "unparseable": counts["unparseable"],
        "answer_errors": counts["expected"] - counts["answered"],
        "mean": _mean([r[C.SCORE] for r in ok]),
        "by_category": {c: _mean(v) for c, v in sorted(by_cat.items())},
        "by_turn": {t: _mean(v) for t, v in sorted(by_turn.items())},
        "completeness": {"mtbench": counts,
                         **{f"turn{t}": count_turns([r for r in scored if r["turn"] == t]) for t in turns}},
        "failures": [{"question_id": r["question_id"], "turn": r["turn"], "error": r["error"]}
                     for r in scored if r["error"] is not None]
                    + [{"question_id": r["question_id"], "turn": r["turn"], "error": f"answer: {r['answer_error']}"}
                       for r in scored if r["answer_error"] is not None],
    }
