"""The numbers of an evaluation: per-turn score records and summary.json. Pure: dicts in, dicts out.

Every judged turn ends in exactly one of: scored, failed (the answer or the judge request failed), or
unparseable (the judge answered but no rating could be read). Only scored turns are in the means.
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


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _base(r: dict[str, Any]) -> dict[str, Any]:
    return {"question_id": r["question_id"], "category": r["category"], "turn": int(r["turn"])}


def judgment_records(judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows after `write_judgments` -> {question_id, category, turn, score, judgment, error}."""
    out = []
    for r in judged:
        error = text_or_none(r.get("answer_error")) or text_or_none(r.get(JUDGE_ERROR))
        text = text_or_none(r.get(JUDGMENT))
        score = parse_rating(text) if error is None else None
        if error is None and score is None:
            error = UNPARSEABLE
        out.append({**_base(r), C.SCORE: score, JUDGMENT: text, "error": error})
    return out


def logprob_records(judged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows after `logprob_ratings` -> {question_id, category, turn, score, judge_mass, error}."""
    out = []
    for r in judged:
        score = r.get(C.SCORE)
        error = text_or_none(r.get("answer_error")) or text_or_none(r.get(C.error_column(C.SCORE)))
        ok = error is None and score is not None and not math.isnan(score)
        out.append({**_base(r), C.SCORE: float(score) if ok else None,
                    JUDGE_MASS: float(r[JUDGE_MASS]) if ok else None, "error": None if ok else (error or "no score")})
    return out


def summarize_mtbench(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the scored turns (overall, by category, by turn), the failed and the unparseable turns."""
    ok = [r for r in scored if r["error"] is None]
    by_cat, by_turn = defaultdict(list), defaultdict(list)
    for r in ok:
        by_cat[r["category"]].append(r[C.SCORE])
        by_turn[str(r["turn"])].append(r[C.SCORE])
    unparseable = [r for r in scored if r["error"] == UNPARSEABLE]
    return {
        "questions": len({r["question_id"] for r in scored}), "judged_turns": len(scored),
        "scored": len(ok), "failed": len(scored) - len(ok) - len(unparseable), "unparseable": len(unparseable),
        "mean": _mean([r[C.SCORE] for r in ok]),
        "by_category": {c: _mean(v) for c, v in sorted(by_cat.items())},
        "by_turn": {t: _mean(v) for t, v in sorted(by_turn.items())},
        "failures": [{"question_id": r["question_id"], "turn": r["turn"], "error": r["error"]}
                     for r in scored if r["error"] is not None],
    }
