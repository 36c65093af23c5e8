"""Arena-Hard-style pairwise scoring: the student against a baseline, each question judged twice with the
positions swapped (game 1: student = A; game 2: student = B), ties allowed. Pure numpy; no models.

A game scores 1 for a student win, 0.5 for a tie, 0 for a loss. A question's score is the mean of its
judged games (a game whose verdict could not be read is left out and counted). The win rate is the mean
over questions; its confidence interval is a percentile bootstrap over questions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_STUDENT_SCORE = {  # (game, verdict) -> the student's score; game 2 has the student in position B
    (1, "A"): 1.0, (1, "B"): 0.0, (1, "tie"): 0.5,
    (2, "A"): 0.0, (2, "B"): 1.0, (2, "tie"): 0.5,
}


def student_score(game: int, verdict: str | None) -> float | None:
    """The student's score in one game, or None when the verdict is unreadable.

    >>> student_score(1, "A"), student_score(2, "A"), student_score(2, "tie"), student_score(1, None)
    (1.0, 0.0, 0.5, None)
    """
    return None if verdict is None else _STUDENT_SCORE[(game, verdict)]


def question_scores(verdicts: list[tuple[Any, int, str | None]]) -> tuple[np.ndarray, int]:
    """Per-question student scores from (question_id, game, verdict) rows, in first-seen question order.

    Returns (scores: (n_questions_with_a_judged_game,), unreadable games). A consistent win (A then B)
    scores 1, a win that flips with the position (A then A) scores 0.5: position bias cancels out.

    >>> s, bad = question_scores([(1, 1, "A"), (1, 2, "B"), (2, 1, "A"), (2, 2, "A"), (3, 1, None), (3, 2, "tie")])
    >>> s.tolist(), bad
    ([1.0, 0.5, 0.5], 1)
    """
    by_q: dict[Any, list[float]] = {}
    unreadable = 0
    for qid, game, verdict in verdicts:
        score = student_score(game, verdict)
        if score is None:
            unreadable += 1
            by_q.setdefault(qid, [])
            continue
        by_q.setdefault(qid, []).append(score)
    return np.array([np.mean(v) for v in by_q.values() if v], dtype=float), unreadable


def bootstrap_ci(scores: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `scores` (n,): resample questions with replacement.

    >>> bootstrap_ci(np.array([1.0, 1.0, 1.0]))
    (1.0, 1.0)
    """
    if len(scores) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(n_boot, len(scores)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (round(float(lo), 4), round(float(hi), 4))


def win_rate(verdicts: list[tuple[Any, int, str | None]], n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Win rate of the student with its 95% bootstrap interval and the counts behind it."""
    scores, unreadable = question_scores(verdicts)
    games = [student_score(g, v) for _, g, v in verdicts]
    lo, hi = bootstrap_ci(scores, n_boot, seed)
    return {"win_rate": round(float(scores.mean()), 4) if len(scores) else None, "ci95": [lo, hi],
            "questions": int(len(scores)), "games": len(verdicts), "unreadable": unreadable,
            "wins": games.count(1.0), "ties": games.count(0.5), "losses": games.count(0.0)}
