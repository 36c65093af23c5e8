"""FastChat pair-v2 scoring (`pairwise.mode: pair-v2`): the model against a baseline, each question judged
twice with the positions swapped (game 1: the model is A; game 2: the model is B), verdicts [[A]] / [[B]] /
[[C]] (tie). Pure numpy; no models.

As lm-sys/FastChat fastchat/llm_judge/show_result.py (display_result_pairwise): a question with an unreadable
or failed game is dropped (and counted here); a question is a win when both games name the model, a loss when
both name the baseline, and a tie otherwise (a tie in game 1, or games that disagree: position bias cancels);
the win rate is (wins + ties / 2) / questions. FastChat gives no interval; here it is a percentile bootstrap
over the questions.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

_WINNER = {(1, "A"): "model", (1, "B"): "baseline", (2, "A"): "baseline", (2, "B"): "model"}


def winner(game: int, verdict: str | None) -> str | None:
    """"model", "baseline" or "tie" for one game's verdict; None when unreadable.

    >>> winner(1, "A"), winner(2, "A"), winner(2, "tie"), winner(1, None)
    ('model', 'baseline', 'tie', None)
    """
    if verdict is None:
        return None
    return "tie" if verdict == "tie" else _WINNER[(game, verdict)]


def question_outcomes(verdicts: list[tuple[Any, int, str | None]]) -> tuple[np.ndarray, dict[str, int]]:
    """Per-question outcomes for the model (1 win, 0.5 tie, 0 loss) from (question_id, game, verdict) rows, in
    first-seen order, and {questions, pairs, dropped}.

    >>> out, n = question_outcomes([(1, 1, "A"), (1, 2, "B"), (2, 1, "A"), (2, 2, "A"), (3, 1, None), (3, 2, "tie")])
    >>> out.tolist(), n
    ([1.0, 0.5], {'questions': 3, 'pairs': 2, 'dropped': 1})
    """
    by_q: dict[Any, dict[int, str | None]] = {}
    for qid, game, verdict in verdicts:
        by_q.setdefault(qid, {})[game] = winner(game, verdict)
    outcomes = []
    for games in by_q.values():
        g1, g2 = games.get(1), games.get(2)
        if g1 is None or g2 is None:
            continue
        outcomes.append(0.5 if g1 == "tie" or g1 != g2 else float(g1 == "model"))
    used = len(outcomes)
    return np.array(outcomes, dtype=float), {"questions": len(by_q), "pairs": used, "dropped": len(by_q) - used}


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


def score(verdicts: list[tuple[Any, int, str | None]], n_boot: int = 100, seed: int = 0) -> dict[str, Any]:
    """FastChat's adjusted win rate of the model with a 95% bootstrap interval and the counts behind it."""
    outcomes, counts = question_outcomes(verdicts)
    lo, hi = bootstrap_ci(outcomes, n_boot, seed)
    labels = Counter(v or "unreadable" for _, _, v in verdicts)
    return {"win_rate": round(float(outcomes.mean()), 4) if len(outcomes) else None,
            "ci95": [None if np.isnan(lo) else lo, None if np.isnan(hi) else hi], **counts,
            "wins": int((outcomes == 1.0).sum()), "ties": int((outcomes == 0.5).sum()),
            "losses": int((outcomes == 0.0).sum()), "games": len(verdicts), "labels": dict(sorted(labels.items()))}
